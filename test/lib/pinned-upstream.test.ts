import { test, type Test } from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Pool } from 'undici'
import { PinnedUpstream, UpstreamError, compactPoolQueue } from '../../lib/pinned-upstream.js'

const OPTS = { queueMax: 3, timeoutMs: 5000, connectTimeoutMs: 1000, maxResponseBytes: 1 << 20 }

async function failureOf (p: Promise<unknown>): Promise<string> {
  return await p.then(() => 'resolved', (err: unknown) => err instanceof UpstreamError ? err.kind : String(err))
}

interface Held { req: IncomingMessage, res: ServerResponse, body: string }

/** An HTTP server that holds every request until the test answers it, and counts connections. */
async function holdingServer (t: Test): Promise<{ url: string, held: Held[], connections: () => number, waitFor: (n: number) => Promise<void> }> {
  const held: Held[] = []
  let connections = 0
  let waiter: (() => void) | undefined
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { body += c })
    req.on('end', () => { held.push({ req, res, body }); waiter?.() })
  })
  server.on('connection', () => { connections++ })
  server.keepAliveTimeout = 60_000
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/RPC2`,
    held,
    connections: () => connections,
    waitFor: async (n) => {
      const deadline = Date.now() + 5000
      while (held.length < n) {
        if (Date.now() > deadline) throw new Error(`only ${held.length} of ${n} requests arrived`)
        await new Promise<void>(resolve => { waiter = resolve; setTimeout(resolve, 50).unref() })
      }
    }
  }
}

test('the Pool\'s 2,048-slot queue is replaced on the undici version in use', async (t) => {
  // If this fails after an undici upgrade, the internal moved: every session costs 16 KB more until
  // compactPoolQueue learns the new shape (the Pool still works with its own queue).
  const pool = new Pool('http://127.0.0.1:1', { connections: 1 })
  t.teardown(async () => { await pool.destroy() })
  t.equal(compactPoolQueue(pool), true)
  const queues = Object.getOwnPropertySymbols(pool)
    .filter(s => s.description === 'queue')
    .map(s => (pool as unknown as Record<symbol, object>)[s]?.constructor.name)
  t.same(queues, ['SmallQueue'])
})

test('calls wait in the compact queue and go out one by one, in order, on one socket', async (t) => {
  const srv = await holdingServer(t)
  const up = new PinnedUpstream(srv.url, OPTS)
  t.teardown(async () => { await up.destroy() })

  const calls = [1, 2, 3, 4].map(async i => await up.request({ method: 'POST', path: '/RPC2', body: `call ${i}` }))
  for (let i = 1; i <= 4; i++) {
    await srv.waitFor(i)
    t.equal(srv.held.length, i, `call ${i} is on the wire alone (pipelining 1)`)
    const h = srv.held[i - 1] as Held
    t.equal(h.body, `call ${i}`, 'in the order they were made')
    h.res.end(`answer ${i}`)
  }
  const answers = await Promise.all(calls)
  t.same(answers.map(a => a.body.toString()), ['answer 1', 'answer 2', 'answer 3', 'answer 4'])
  t.equal(srv.connections(), 1, 'one socket for all of them')
  t.equal(up.pending, 0)
})

test('beyond queueMax a call is refused as busy; the others still complete', async (t) => {
  const srv = await holdingServer(t)
  const up = new PinnedUpstream(srv.url, OPTS)
  t.teardown(async () => { await up.destroy() })
  const calls = [1, 2, 3, 4].map(async i => await up.request({ method: 'POST', path: '/RPC2', body: `call ${i}` }))
  t.equal(await failureOf(up.request({ method: 'POST', path: '/RPC2', body: 'one too many' })), 'busy')
  for (let i = 1; i <= 4; i++) {
    await srv.waitFor(i)
    ;(srv.held[i - 1] as Held).res.end('ok')
  }
  t.equal((await Promise.all(calls)).length, 4)
  t.same(srv.held.map(h => h.body), ['call 1', 'call 2', 'call 3', 'call 4'])
})

test('a socket lost with calls queued fails every one of them as lost, and never reconnects', async (t) => {
  const srv = await holdingServer(t)
  const up = new PinnedUpstream(srv.url, OPTS)
  t.teardown(async () => { await up.destroy() })
  const lost = new Promise(resolve => { up.onLost = resolve })
  const calls = [1, 2, 3].map(async i => await up.request({ method: 'POST', path: '/RPC2', body: `call ${i}` }))
  await srv.waitFor(1)
  ;(srv.held[0] as Held).req.socket.destroy()
  await lost
  const results = await Promise.allSettled(calls)
  for (const r of results) {
    t.equal(r.status, 'rejected')
    t.ok((r as PromiseRejectedResult).reason instanceof UpstreamError)
    t.equal(((r as PromiseRejectedResult).reason as UpstreamError).kind, 'lost')
  }
  t.equal(await failureOf(up.request({ method: 'POST', path: '/RPC2', body: 'after' })), 'lost')
  t.equal(srv.connections(), 1, 'no second socket')
  t.equal(srv.held.length, 1, 'the queued calls never reached the server')
})

test('close() waits for the queued calls, then closes the socket', async (t) => {
  const srv = await holdingServer(t)
  const up = new PinnedUpstream(srv.url, OPTS)
  t.teardown(async () => { await up.destroy() })
  const calls = [1, 2].map(async i => await up.request({ method: 'POST', path: '/RPC2', body: `call ${i}` }))
  await srv.waitFor(1)
  let closed = false
  const closing = up.close().then(() => { closed = true })
  ;(srv.held[0] as Held).res.end('a')
  await srv.waitFor(2)
  t.equal(closed, false, 'still open while a call waits')
  ;(srv.held[1] as Held).res.end('b')
  t.same((await Promise.all(calls)).map(r => r.body.toString()), ['a', 'b'])
  await closing
  t.equal(closed, true)
})
