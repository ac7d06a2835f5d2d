import net from 'node:net'
import { Client } from 'undici'
import { decodeXml } from '../../lib/charset.js'
import { decodeResponse, encodeCall } from '../../lib/xmlrpc.js'
import { createSimulator, type Simulator, type SimulatorOptions } from '../../sim/legacy.js'

export interface Teardown {
  teardown (fn: () => unknown): void
}

export async function startSim (t: Teardown, opts: SimulatorOptions = {}): Promise<Simulator> {
  const sim = await createSimulator(opts)
  t.teardown(() => sim.close())
  return sim
}

export type RpcAnswer = ReturnType<typeof decodeResponse>

/** One undici Client is one keep-alive socket: the "pinned" connection a gateway would keep. */
export function pinnedClient (t: Teardown, sim: Simulator): Client {
  const client = new Client(sim.origin, { pipelining: 1, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 })
  t.teardown(() => client.destroy())
  return client
}

export async function rpc (client: Client, sim: Simulator, method: string, params: unknown[] = []): Promise<RpcAnswer> {
  const res = await client.request({
    path: new URL(sim.rpcUrl).pathname,
    method: 'POST',
    headers: { 'content-type': 'text/xml' },
    body: encodeCall(method, params, { encoding: 'UTF-8' })
  })
  const body = Buffer.from(await res.body.arrayBuffer())
  return decodeResponse(decodeXml(body, res.headers['content-type'] as string | undefined, 'utf-8'))
}

/** The value of a non-fault answer; throws on a fault so the test shows it. */
export function valueOf (answer: RpcAnswer): unknown {
  if (answer.fault) throw new Error(`unexpected fault ${answer.faultCode}: ${answer.faultString}`)
  return answer.value
}

export interface RawResponse {
  status: number
  headers: Record<string, string>
  body: Buffer
}

/**
 * A bare HTTP/1.1 connection: nothing between the test and the socket, so idle sockets stay open
 * however the server advertises its keep-alive, and hangs, closes and truncation are visible as is.
 */
export class RawConnection {
  private data = Buffer.alloc(0)
  private ended = false
  private wake: (() => void) | null = null
  readonly closed: Promise<void>

  private constructor (readonly socket: net.Socket, private readonly host: string) {
    socket.on('data', (chunk: Buffer) => {
      this.data = Buffer.concat([this.data, chunk])
      this.notify()
    })
    this.closed = new Promise((resolve) => socket.once('close', () => {
      this.ended = true
      this.notify()
      resolve()
    }))
    socket.on('error', () => {})
  }

  static async open (t: Teardown, sim: Simulator): Promise<RawConnection> {
    const { hostname, port } = new URL(sim.origin)
    const socket = await connect(Number(port), hostname)
    const conn = new RawConnection(socket, `${hostname}:${port}`)
    t.teardown(() => socket.destroy())
    return conn
  }

  get isClosed (): boolean {
    return this.ended
  }

  send (method: string, path: string, opts: { headers?: Record<string, string>, body?: Buffer | string } = {}): void {
    const body = typeof opts.body === 'string' ? Buffer.from(opts.body, 'utf8') : opts.body ?? Buffer.alloc(0)
    const headers: Record<string, string> = { host: this.host, 'content-length': String(body.length), ...opts.headers }
    const head = `${method} ${path} HTTP/1.1\r\n` + Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n'
    this.socket.write(Buffer.concat([Buffer.from(head, 'latin1'), body]))
  }

  async response (method = 'POST'): Promise<RawResponse> {
    const head = await this.take(() => {
      const end = this.data.indexOf('\r\n\r\n')
      return end < 0 ? undefined : end + 4
    })
    const [statusLine = '', ...lines] = head.toString('latin1').trimEnd().split('\r\n')
    const headers: Record<string, string> = {}
    for (const line of lines) {
      const colon = line.indexOf(':')
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
    }
    const status = Number(statusLine.split(' ')[1])
    const length = method === 'HEAD' ? 0 : Number(headers['content-length'] ?? 0)
    const body = await this.take(() => this.data.length >= length ? length : undefined)
    return { status, headers, body }
  }

  async request (method: string, path: string, opts: { headers?: Record<string, string>, body?: Buffer | string } = {}): Promise<RawResponse> {
    this.send(method, path, opts)
    return await this.response(method)
  }

  async rpc (sim: Simulator, method: string, params: unknown[] = []): Promise<RpcAnswer> {
    const res = await this.request('POST', new URL(sim.rpcUrl).pathname, {
      headers: { 'content-type': 'text/xml' },
      body: encodeCall(method, params, { encoding: 'UTF-8' })
    })
    return decodeResponse(decodeXml(res.body, res.headers['content-type'], 'utf-8'))
  }

  /** Resolves to true when any byte arrives within ms, false otherwise. */
  async anythingWithin (ms: number): Promise<boolean> {
    if (this.data.length > 0) return true
    return await new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.socket.off('data', onData)
        resolve(false)
      }, ms)
      const onData = (): void => {
        clearTimeout(timer)
        resolve(true)
      }
      this.socket.once('data', onData)
    })
  }

  private async take (size: () => number | undefined): Promise<Buffer> {
    for (;;) {
      const n = size()
      if (n !== undefined) {
        const out = this.data.subarray(0, n)
        this.data = this.data.subarray(n)
        return out
      }
      if (this.ended) throw new Error('socket closed before a complete response')
      await new Promise<void>((resolve) => { this.wake = resolve })
    }
  }

  private notify (): void {
    const wake = this.wake
    this.wake = null
    wake?.()
  }
}

export function connect (port: number, host: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host)
    socket.once('connect', () => {
      socket.off('error', reject)
      resolve(socket)
    })
    socket.once('error', reject)
  })
}

/** Polls until check() is truthy; fails after timeoutMs. */
export async function eventually<T> (check: () => T | undefined | null | false, timeoutMs = 2000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = check()
    if (value !== undefined && value !== null && value !== false) return value
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
