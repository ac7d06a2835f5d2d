import net from 'node:net'
import type { Test } from 'tap'
import { encodeResponse } from '../lib/xmlrpc.js'

/**
 * A legacy server that does exactly what a test tells it, byte for byte, on raw keep-alive sockets:
 * trickled bodies, interim answers, stray bytes, lying framing. It parses requests (Content-Length
 * bodies, as undici sends them) and answers each with the steps `script` returns; without a script
 * step list, a well-formed XML-RPC answer. Bounded: every socket lives at most `lifetimeMs`, every
 * request and every answer is capped in bytes, and everything is destroyed at teardown.
 */

export interface RawRequest {
  method: string
  /** The request target exactly as sent. */
  target: string
  /** Lower-cased names; repeated headers joined with ", ". */
  headers: Record<string, string>
  body: Buffer
  socketId: number
  /** 0 for the first request on its socket. */
  index: number
  receivedAt: number
}

/** Bytes to write, a pause, or the end of the socket (FIN) / its destruction (RST). */
export type Step = string | Buffer | { wait: number } | { end: true } | { destroy: true }

export type Script = (req: RawRequest) => Step[] | undefined

export interface HostileLegacy {
  /** The XML-RPC URL (`/RPC2`). */
  readonly url: string
  readonly port: number
  readonly requests: RawRequest[]
  /** Sockets accepted so far, and those still open. */
  connections (): number
  open (): number
  /** Replaces the script for requests that arrive from now on. */
  setScript (script: Script): void
  /** Resolves once `n` requests have arrived (rejects after 5 s). */
  waitForRequests (n: number): Promise<void>
  close (): Promise<void>
}

const MAX_REQUEST_BYTES = 1 << 20
const MAX_ANSWER_BYTES = 1 << 20

/** A whole HTTP/1.1 answer with Content-Length. */
export function httpAnswer (body: string | Buffer, opts: { status?: string, headers?: Record<string, string> } = {}): Buffer {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body
  let head = `HTTP/1.1 ${opts.status ?? '200 OK'}\r\n`
  const headers = { 'content-type': 'text/xml', ...opts.headers }
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`
  head += `content-length: ${bytes.length}\r\n\r\n`
  return Buffer.concat([Buffer.from(head, 'latin1'), bytes])
}

/** An XML-RPC answer carrying `value`, as a whole HTTP answer. */
export function rpcAnswer (value: unknown, headers?: Record<string, string>): Buffer {
  return httpAnswer(encodeResponse(value), headers === undefined ? {} : { headers })
}

/** The XML-RPC method name of a call (empty when the body is not a methodCall). */
export function methodOf (req: RawRequest): string {
  return /<methodName>([^<]*)<\/methodName>/.exec(req.body.toString('utf8'))?.[1] ?? ''
}

/** `bytes` one byte at a time, `everyMs` apart. */
export function trickle (bytes: Buffer | string, everyMs: number): Step[] {
  const buf = typeof bytes === 'string' ? Buffer.from(bytes) : bytes
  const steps: Step[] = []
  for (let i = 0; i < buf.length; i++) {
    if (i > 0) steps.push({ wait: everyMs })
    steps.push(buf.subarray(i, i + 1))
  }
  return steps
}

export async function startHostileLegacy (t: Test, script: Script = () => undefined, opts: { lifetimeMs?: number } = {}): Promise<HostileLegacy> {
  const lifetimeMs = opts.lifetimeMs ?? 30_000
  const requests: RawRequest[] = []
  const sockets = new Set<net.Socket>()
  let current = script
  let connections = 0
  let waiter: (() => void) | undefined

  const server = net.createServer((socket) => {
    const socketId = ++connections
    sockets.add(socket)
    const life = setTimeout(() => socket.destroy(), lifetimeMs)
    life.unref()
    socket.on('close', () => { clearTimeout(life); sockets.delete(socket) })
    socket.on('error', () => {})
    let buffered = Buffer.alloc(0)
    let index = 0
    // Answers go out in request order, one after the other, as on a real HTTP/1.1 socket.
    let answering: Promise<void> = Promise.resolve()

    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      if (buffered.length > MAX_REQUEST_BYTES) {
        socket.destroy()
        return
      }
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n')
        if (end === -1) return
        const lines = buffered.subarray(0, end).toString('latin1').split('\r\n')
        const [method = '', target = ''] = (lines[0] ?? '').split(' ')
        const headers: Record<string, string> = {}
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(':')
          if (colon <= 0) continue
          const name = line.slice(0, colon).trim().toLowerCase()
          const value = line.slice(colon + 1).trim()
          headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
        }
        const length = Number(headers['content-length'] ?? 0)
        if (buffered.length < end + 4 + length) return
        const body = buffered.subarray(end + 4, end + 4 + length)
        buffered = buffered.subarray(end + 4 + length)
        const req: RawRequest = { method, target, headers, body: Buffer.from(body), socketId, index: index++, receivedAt: Date.now() }
        requests.push(req)
        waiter?.()
        const steps = current(req) ?? [rpcAnswer(methodOf(req) === 'login' ? 'welcome' : 'ok')]
        answering = answering.then(async () => { await play(socket, steps) })
      }
    })
  })

  async function play (socket: net.Socket, steps: Step[]): Promise<void> {
    let written = 0
    for (const step of steps) {
      if (socket.destroyed) return
      if (typeof step === 'string' || Buffer.isBuffer(step)) {
        const bytes = typeof step === 'string' ? Buffer.from(step, 'latin1') : step
        written += bytes.length
        if (written > MAX_ANSWER_BYTES) {
          socket.destroy()
          return
        }
        socket.write(bytes)
      } else if ('wait' in step) {
        await new Promise<void>(resolve => {
          const timer = setTimeout(resolve, step.wait)
          socket.once('close', () => { clearTimeout(timer); resolve() })
        })
      } else if ('end' in step) {
        socket.end()
      } else {
        socket.destroy()
      }
    }
  }

  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  const close = async (): Promise<void> => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>(resolve => server.close(() => resolve()))
  }
  t.teardown(close)
  return {
    url: `http://127.0.0.1:${port}/RPC2`,
    port,
    requests,
    connections: () => connections,
    open: () => sockets.size,
    setScript: (s) => { current = s },
    waitForRequests: async (n) => {
      const until = Date.now() + 5000
      while (requests.length < n) {
        if (Date.now() > until) throw new Error(`only ${requests.length} of ${n} requests arrived`)
        await new Promise<void>(resolve => { waiter = resolve; setTimeout(resolve, 20).unref() })
      }
    },
    close
  }
}
