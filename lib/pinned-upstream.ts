import type { Socket } from 'node:net'
import { Pool, buildConnector, type Dispatcher } from 'undici'

/**
 * One legacy login = one TCP connection. A PinnedUpstream is an undici Pool limited to one
 * connection (pipelining 1, so calls are serialized) that opens its socket once and never again.
 *
 * undici is built for the opposite (sockets are interchangeable and cheap), so four of its
 * defaults would silently break a legacy login; each is switched off here:
 * - idle keep-alive timeout (4 s, or shorter on a server `Keep-Alive: timeout` hint): the timeout is
 *   set to the longest a Node timer allows and the hint is neutralized by a negative threshold;
 * - reconnect on the next request after the socket closed: the connector refuses a second socket;
 * - socket destroyed when the caller aborts: callers here never pass a signal, and the whole answer
 *   is always read (a browser that went away only loses its copy);
 * - socket closed after a HEAD request: `reset: false` for HEAD.
 */

// setTimeout's ceiling (about 24.8 days); undici arms its keep-alive timer with a native timer.
const MAX_TIMER_MS = 2 ** 31 - 1

type Connector = ReturnType<typeof buildConnector>
// One connector per connect timeout, shared by all sessions: building one per session costs a TLS
// session cache (a Map and a FinalizationRegistry) and its closures, per session, for nothing.
const connectors = new Map<number, Connector>()
function connectorFor (timeout: number): Connector {
  let connector = connectors.get(timeout)
  if (connector === undefined) {
    connector = buildConnector({ timeout, keepAlive: true, keepAliveInitialDelay: 30_000 })
    connectors.set(timeout, connector)
  }
  return connector
}

interface WaitingQueue<T> { isEmpty: () => boolean, push: (item: T) => void, shift: () => T | null }

/**
 * The queue a Pool keeps calls in while its one connection is busy. undici's own (FixedQueue)
 * pre-allocates 2,048 slots, 16 KB per Pool, more than everything else a session costs together;
 * here at most SESSION_QUEUE_MAX calls ever wait, so a plain array does.
 */
class SmallQueue<T> implements WaitingQueue<T> {
  private readonly items: T[] = []
  isEmpty (): boolean { return this.items.length === 0 }
  push (item: T): void { this.items.push(item) }
  shift (): T | null { return this.items.shift() ?? null }
}

/**
 * Swaps the Pool's FixedQueue for a SmallQueue. The queue is an undici internal (a class field
 * under `Symbol('queue')` in lib/dispatcher/pool-base.js): it is only replaced when it is found in
 * exactly that shape and empty; otherwise the Pool keeps its own queue (correct, only larger).
 * test/lib/pinned-upstream.test.ts fails if an undici upgrade stops this from applying.
 */
export function compactPoolQueue (pool: Pool): boolean {
  const target = pool as unknown as Record<symbol, unknown>
  for (const key of Object.getOwnPropertySymbols(pool)) {
    if (key.description !== 'queue') continue
    const queue = target[key] as Partial<WaitingQueue<unknown>> | undefined
    if (typeof queue?.isEmpty === 'function' && typeof queue.push === 'function' &&
      typeof queue.shift === 'function' && queue.isEmpty()) {
      target[key] = new SmallQueue()
      return true
    }
  }
  return false
}

export type UpstreamFailure =
  | 'unavailable' // never connected: the legacy server refused or did not accept the connection
  | 'lost' // the pinned socket closed, or the session was closed locally
  | 'timeout' // no answer within the timeout; the socket is closed
  | 'busy' // too many calls are waiting for this socket
  | 'too-large' // the answer exceeded the size bound (the socket survives: the rest was drained)

export class UpstreamError extends Error {
  override name = 'UpstreamError'
  constructor (readonly kind: UpstreamFailure, message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}

export interface PinnedRequest {
  method: string
  path: string
  headers?: Record<string, string>
  body?: Buffer | string
}

export interface PinnedResponse {
  statusCode: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

export interface PinnedUpstreamOptions {
  /** Calls allowed to wait behind the one on the wire. */
  queueMax: number
  timeoutMs: number
  connectTimeoutMs: number
  maxResponseBytes: number
}

export type PinnedState = 'new' | 'connected' | 'lost' | 'closed'

export type LostListener = (kind: 'lost' | 'timeout', cause: Error | undefined) => void

function closesConnection (header: string | string[] | undefined): boolean {
  if (header === undefined) return false
  const values = Array.isArray(header) ? header : [header]
  return values.some(v => v.split(',').some(token => token.trim().toLowerCase() === 'close'))
}

export class PinnedUpstream {
  readonly origin: string
  state: PinnedState = 'new'
  /** Calls on the wire or waiting for it. */
  pending = 0
  /** The local port of the pinned socket (for logs and tests), once connected. */
  localPort: number | undefined
  lastUsedAt = Date.now()
  /**
   * Called once when the pinned socket is lost (not after close() or destroy()). A property rather
   * than an EventEmitter: there is one listener, the session store, and ten thousand sessions.
   */
  onLost: LostListener | undefined
  private readonly pool: Pool
  private readonly opts: PinnedUpstreamOptions
  private socket: Socket | undefined
  private lossCause: Error | undefined
  private lossKind: 'lost' | 'timeout' = 'lost'
  private destroyed = false

  /** `opts` is kept, not copied: the session store passes one object to all its sessions. */
  constructor (origin: URL | string, opts: PinnedUpstreamOptions) {
    this.origin = new URL(origin).origin
    this.opts = opts
    const connectOnce = connectorFor(opts.connectTimeoutMs)
    this.pool = new Pool(this.origin, {
      connections: 1,
      pipelining: 1,
      keepAliveTimeout: MAX_TIMER_MS,
      keepAliveMaxTimeout: MAX_TIMER_MS,
      // undici subtracts this from a server's Keep-Alive hint; negative makes any hint exceed the max.
      keepAliveTimeoutThreshold: -MAX_TIMER_MS,
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      connect: (connectOpts, callback) => {
        if (this.state !== 'new' || this.socket !== undefined) {
          callback(new UpstreamError('lost', 'the pinned connection is gone and is never reopened'), null)
          return
        }
        connectOnce(connectOpts, (err, socket) => {
          if (err !== null) {
            callback(err, null)
            return
          }
          this.socket = socket
          this.localPort = socket.localPort
          if (this.state === 'new') this.state = 'connected'
          callback(null, socket)
        })
      }
    })
    compactPoolQueue(this.pool)
    this.pool.on('disconnect', (_origin, _targets, err) => {
      this.markLost(err)
    })
  }

  get connected (): boolean {
    return this.state === 'connected'
  }

  /** Sends one request on the pinned socket and reads the whole answer. Never reconnects. */
  async request (req: PinnedRequest): Promise<PinnedResponse> {
    if (this.state === 'lost' || this.state === 'closed') {
      throw new UpstreamError(this.state === 'lost' ? this.lossKind : 'lost', 'the pinned connection is closed', { cause: this.lossCause })
    }
    if (this.pending > this.opts.queueMax) {
      throw new UpstreamError('busy', `${this.pending} calls already use this session`)
    }
    this.pending++
    this.lastUsedAt = Date.now()
    try {
      const options: Dispatcher.RequestOptions = {
        path: req.path,
        method: req.method as Dispatcher.HttpMethod,
        headers: req.headers,
        body: req.body ?? null
      }
      // undici closes the socket after HEAD to survive servers that send a body anyway.
      if (req.method === 'HEAD') options.reset = false
      const res = await this.pool.request(options)
      const length = Number(res.headers['content-length'])
      // The common case, a declared length within bounds, is read in one go (undici enforces the
      // length); otherwise chunk by chunk with the size bound.
      const body = Number.isInteger(length) && length <= this.opts.maxResponseBytes
        ? Buffer.from(await res.body.arrayBuffer())
        : await this.readBody(res.body)
      // The server closes the socket after this answer (and undici would too): this answer is
      // good, the login on the socket is not. Said now, not when the close event comes, so that a
      // login answered this way never becomes a session.
      if (closesConnection(res.headers.connection)) this.markLost(new UpstreamError('lost', 'the legacy server answered with Connection: close'))
      return { statusCode: res.statusCode, headers: res.headers, body }
    } catch (err) {
      throw this.classify(err)
    } finally {
      this.pending--
      this.lastUsedAt = Date.now()
    }
  }

  private async readBody (body: Dispatcher.ResponseData['body']): Promise<Buffer> {
    const chunks: Buffer[] = []
    let size = 0
    let tooLarge = false
    // Always read to the end: an unread answer would leave the socket unusable, and destroying the
    // stream destroys the socket. An oversized answer is drained and dropped, keeping the session.
    for await (const chunk of body) {
      size += (chunk as Buffer).length
      if (size > this.opts.maxResponseBytes) tooLarge = true
      if (!tooLarge) chunks.push(chunk as Buffer)
    }
    if (tooLarge) {
      throw new UpstreamError('too-large', `the answer is larger than ${this.opts.maxResponseBytes} bytes`)
    }
    return chunks.length === 1 ? chunks[0] as Buffer : Buffer.concat(chunks, size)
  }

  private classify (err: unknown): UpstreamError {
    if (err instanceof UpstreamError) {
      // Our connector's refusal surfaces here when a call was queued behind a socket that died.
      return err.kind === 'lost' && this.state === 'lost' ? new UpstreamError(this.lossKind, err.message, { cause: this.lossCause }) : err
    }
    const e = err as Error & { code?: string }
    if (e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT') {
      this.lossKind = 'timeout'
      // undici destroys the socket on these; make sure of it: a late answer must never be read as
      // the answer to the next call.
      this.markLost(e)
      return new UpstreamError('timeout', e.message, { cause: e })
    }
    if (this.state === 'new' || (this.state === 'closed' && this.socket === undefined)) {
      return new UpstreamError('unavailable', e.message, { cause: e })
    }
    return new UpstreamError(this.state === 'lost' ? this.lossKind : 'lost', e.message, { cause: e })
  }

  private markLost (cause: Error | undefined): void {
    if (this.state === 'lost' || this.state === 'closed') return
    if (this.state === 'new' && this.socket === undefined) return // a failed first connect is not a loss
    this.state = 'lost'
    this.lossCause = cause
    const code = (cause as { code?: string } | undefined)?.code
    if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') this.lossKind = 'timeout'
    this.socket?.destroy()
    this.pool.destroy(new UpstreamError('lost', 'the pinned connection closed')).catch(() => {})
    const onLost = this.onLost
    this.onLost = undefined
    onLost?.(this.lossKind, cause)
  }

  /** Closes the socket after the calls already queued; no event. */
  async close (): Promise<void> {
    if (this.state === 'closed') return
    const wasLost = this.state === 'lost'
    this.state = 'closed'
    if (wasLost) return
    await this.pool.close().catch(() => {})
  }

  /** Closes at once: queued calls fail as lost. */
  async destroy (): Promise<void> {
    // Also after close(): a graceful close that waits on a hung call can be cut short.
    if (this.destroyed) return
    this.destroyed = true
    this.state = 'closed'
    this.socket?.destroy()
    await this.pool.destroy(new UpstreamError('lost', 'the session was closed')).catch(() => {})
  }
}
