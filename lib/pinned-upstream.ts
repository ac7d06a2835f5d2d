import type { Socket } from 'node:net'
import { Pool, buildConnector, errors as undiciErrors, util as undiciUtil, type Dispatcher } from 'undici'

/**
 * One legacy login = one TCP connection. A PinnedUpstream is an undici Pool limited to one
 * connection that opens its socket once and never again. Calls wait in its own queue and go to
 * the socket one at a time, each under a deadline that runs from the moment it is sent.
 *
 * undici is built for the opposite (sockets are interchangeable and cheap, peers are honest), so
 * several of its behaviours would silently break a legacy login or let a sloppy peer hold one;
 * each is replaced here:
 * - idle keep-alive timeout (4 s, or shorter on a server `Keep-Alive: timeout` hint): the timeout is
 *   set to the longest a Node timer allows and the hint is neutralized by a negative threshold;
 * - reconnect on the next request after the socket closed: the connector refuses a second socket;
 * - socket destroyed when the caller aborts: callers here never pass a signal, and the whole answer
 *   is always read (a browser that went away only loses its copy);
 * - headers and body timeouts that restart on every 1xx and every chunk: a deadline per call for
 *   the whole answer, first byte to last (a trickling server cannot hold the socket);
 * - HEAD: its answer has no body by definition, so a server that sends one anyway (servers that
 *   treat HEAD as GET) would have it read as the answer to the next call. HEAD goes upstream as GET
 *   and the body is dropped, so every byte the server sends belongs to the answer being read;
 * - an unsolicited `100 Continue` (old IIS and servlet stacks send one to every POST) destroys the
 *   socket; RFC 9110 §15.2 says a client skips a 1xx it did not ask for, as undici does for 102/103;
 * - a 304 with a Content-Length (allowed by RFC 9110 §8.6) destroys the socket as a length mismatch;
 * - a 204 or 304 that announces a body anyway is taken as complete, and the socket reused: the
 *   body, when it comes, is read as the next call's answer. Such a socket is ended after the answer.
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
 * here calls wait in the PinnedUpstream's own queue and at most one is ever in the Pool's, so a
 * plain array does.
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
  | 'malformed' // the answer cannot be framed as HTTP/1.1 (bad status line, Content-Length beside
  //             Transfer-Encoding, two lengths, a bad chunk): the socket is closed, the session lost

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

const EMPTY = Buffer.alloc(0)

type HeadersComplete = (statusCode: number, upgrade: boolean, shouldKeepAlive: boolean) => number

/**
 * Two answers that undici's HTTP/1 parser (lib/dispatcher/client-h1.js) turns into a destroyed
 * socket, although HTTP allows them:
 * - a `100 Continue` it did not ask for (onHeadersComplete destroys the socket on it, but skips
 *   every other 1xx): read as the interim answer it is;
 * - a 304 with a Content-Length, which RFC 9110 §8.6 allows (the size of the representation not
 *   sent; ASP.NET MVC and ReactPHP send it): onMessageComplete compares it with the bytes read (none)
 *   and destroys the socket, ending the session on a correct answer. For 204 and 304 (which never
 *   have a body) the parsed length is cleared before that check; the header stays in the answer,
 *   where `send` judges it (framingInDoubt).
 * This parser (a class instance under `Symbol('parser')` on the socket, created once undici takes
 * the socket) is looked up at the first readable event, which can only come after undici sent the
 * first request, so after it created the parser.
 * test/routes/api/legacy-edge.test.ts fails if an undici upgrade moves the parser.
 */
function adjustParser (socket: Socket): void {
  socket.prependOnceListener('readable', () => {
    const target = socket as unknown as Record<symbol, unknown>
    for (const key of Object.getOwnPropertySymbols(socket)) {
      if (key.description !== 'parser') continue
      const parser = target[key] as { onHeadersComplete?: HeadersComplete, contentLength?: unknown } | null
      const original = parser?.onHeadersComplete
      if (parser === null || typeof original !== 'function') return
      parser.onHeadersComplete = function (this: { contentLength?: unknown }, statusCode, upgrade, shouldKeepAlive) {
        if (statusCode === 204 || statusCode === 304) this.contentLength = ''
        return original.call(this, statusCode === 100 ? 102 : statusCode, upgrade, shouldKeepAlive)
      }
      return
    }
  })
}

/**
 * An answer that never has a body (204, 304) but declares one its own way: the bytes the server
 * may send after it would be read as the answer to the next call. A Content-Length on a 304 is
 * allowed (RFC 9110 §8.6) and is not a declaration; on a 204 it is forbidden unless 0, and
 * Transfer-Encoding announces a body on either.
 */
function framingInDoubt (statusCode: number, headers: Record<string, string | string[] | undefined>): boolean {
  if (statusCode !== 204 && statusCode !== 304) return false
  if (headers['transfer-encoding'] !== undefined) return true
  const length = headers['content-length']
  return statusCode === 204 && length !== undefined && String(length).trim() !== '0'
}

/**
 * Reads one answer whole, straight from undici's dispatcher (no Readable stream, no promise per
 * step: what `pool.request()` plus reading its body would cost per call). As `request()` does, a
 * 1xx is skipped and the headers are parsed into lower-case names (arrays for repeated ones).
 * Every byte is always read: an unread answer would leave the socket unusable. Past
 * `maxBytes` the rest is drained and dropped, and the call fails as too large (the session stays).
 */
class AnswerCollector implements Dispatcher.DispatchHandler {
  private statusCode = 0
  private headers: Record<string, string | string[] | undefined> = {}
  private readonly chunks: Buffer[] = []
  private size = 0
  private tooLarge = false

  constructor (
    private readonly maxBytes: number,
    private readonly resolve: (res: PinnedResponse) => void,
    private readonly reject: (err: Error) => void
  ) {}

  onConnect (): void {}

  onHeaders (statusCode: number, rawHeaders: Buffer[]): boolean {
    if (statusCode < 200) return true
    this.statusCode = statusCode
    this.headers = undiciUtil.parseHeaders(rawHeaders) as Record<string, string | string[] | undefined>
    return true
  }

  onData (chunk: Buffer): boolean {
    this.size += chunk.length
    if (this.size > this.maxBytes) this.tooLarge = true
    if (!this.tooLarge) this.chunks.push(chunk)
    return true
  }

  onComplete (): void {
    if (this.tooLarge) {
      this.reject(new UpstreamError('too-large', `the answer is larger than ${this.maxBytes} bytes`))
      return
    }
    const chunks = this.chunks
    const body = chunks.length === 0 ? EMPTY : chunks.length === 1 ? chunks[0] as Buffer : Buffer.concat(chunks, this.size)
    this.resolve({ statusCode: this.statusCode, headers: this.headers, body })
  }

  onError (err: Error): void {
    this.reject(err)
  }
}

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
  /** Settles when the last call made so far is done; undefined when none is waiting or running. */
  private tail: Promise<void> | undefined

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
      // Off: the deadline of send() bounds each call from its start to the last byte of the answer,
      // which these per-phase timers (restarted on every 1xx and every chunk) never do, and it
      // fires first; they would only cost a timer refresh per call and per chunk.
      headersTimeout: 0,
      bodyTimeout: 0,
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
          adjustParser(socket)
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

  /**
   * Sends one request on the pinned socket and reads the whole answer. Never reconnects. Calls go
   * out one at a time in the order they were made; each has `timeoutMs` from the moment it is sent
   * to the last byte of its answer, past which the socket is closed (the session is lost).
   */
  async request (req: PinnedRequest): Promise<PinnedResponse> {
    if (this.state === 'lost' || this.state === 'closed') throw this.gone()
    if (this.pending > this.opts.queueMax) {
      throw new UpstreamError('busy', `${this.pending} calls already use this session`)
    }
    this.pending++
    this.lastUsedAt = Date.now()
    const before = this.tail
    let done!: () => void
    const turn = new Promise<void>(resolve => { done = resolve })
    this.tail = turn
    try {
      if (before !== undefined) await before
      // Lost while waiting (close() lets the calls already queued go out first).
      if (this.destroyed || (this.state as PinnedState) === 'lost') throw this.gone()
      return await this.send(req)
    } catch (err) {
      throw this.classify(err)
    } finally {
      if (this.tail === turn) this.tail = undefined
      done()
      this.pending--
      this.lastUsedAt = Date.now()
    }
  }

  private gone (): UpstreamError {
    return new UpstreamError(this.state === 'lost' ? this.lossKind : 'lost', 'the pinned connection is closed', { cause: this.lossCause })
  }

  private async send (req: PinnedRequest): Promise<PinnedResponse> {
    let expired = false
    const deadline = setTimeout(() => {
      expired = true
      this.expire()
    }, this.opts.timeoutMs)
    try {
      const head = req.method === 'HEAD'
      const res = await new Promise<PinnedResponse>((resolve, reject) => {
        this.pool.dispatch({
          origin: this.origin,
          path: req.path,
          method: (head ? 'GET' : req.method) as Dispatcher.HttpMethod,
          headers: req.headers,
          body: head ? null : req.body ?? null
        }, new AnswerCollector(this.opts.maxResponseBytes, resolve, reject))
      })
      const body = res.body
      // The server closes the socket after this answer (and undici would too): this answer is
      // good, the login on the socket is not. Said now, not when the close event comes, so that a
      // login answered this way never becomes a session.
      if (closesConnection(res.headers.connection)) this.markLost(new UpstreamError('lost', 'the legacy server answered with Connection: close'))
      // The answer itself is whole and passed on; the socket after it is out of step.
      else if (framingInDoubt(res.statusCode, res.headers)) this.markLost(new UpstreamError('lost', `the legacy server declared a body on a ${res.statusCode} answer, which has none: what it sends next cannot be placed`))
      return { statusCode: res.statusCode, headers: res.headers, body: head ? EMPTY : body }
    } catch (err) {
      if (expired) throw new UpstreamError('timeout', `no complete answer within ${this.opts.timeoutMs} ms`, { cause: err })
      throw err
    } finally {
      clearTimeout(deadline)
    }
  }

  /** The call on the wire had no complete answer within its deadline: its socket goes. */
  private expire (): void {
    this.lossKind = 'timeout'
    if (this.state === 'connected') {
      this.markLost(new UpstreamError('timeout', `no complete answer within ${this.opts.timeoutMs} ms`))
    } else {
      // Still connecting (a login), or already closing (a logout): no loss to report, but the
      // socket must not outlive the deadline either.
      this.destroy().catch(() => {})
    }
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
    // llhttp's refusals (it never repairs framing; not every one carries an HPE_ code) and
    // undici's length check: the legacy server answered, but nothing after this point on the
    // socket can be placed. The call gets a bad-answer error (502), the session is over.
    if (e instanceof undiciErrors.HTTPParserError || e.code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') {
      this.markLost(e)
      return new UpstreamError('malformed', `the legacy server's answer is not well-framed HTTP/1.1 (${e.message})`, { cause: e })
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
    // New calls are refused from now on; the last one queued settles after all the others.
    if (this.tail !== undefined) await this.tail
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
