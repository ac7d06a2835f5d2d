import net from 'node:net'

/**
 * A loopback port free right now: bound to port 0, read, released. For processes that must be told
 * a port (the gateway's PORT, nginx, redis); the race with another process is harmless on loopback.
 * Tests and benchmarks share this one.
 */
export async function freePort (host = '127.0.0.1'): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, host, resolve)
  })
  const { port } = server.address() as net.AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}
