import { EventEmitter } from 'node:events'
import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { PinnedUpstream, UpstreamError, type PinnedRequest, type PinnedResponse, type PinnedUpstreamOptions } from './pinned-upstream.js'
import { encodeCall, decodeResponse, XmlRpcParseError, type JsonValue } from './xmlrpc.js'
import { CharsetDecodeError, decodeXml } from './charset.js'
import { encodeXml } from './xml-write.js'
import { parseCallTemplate, type CallTemplate } from './call-template.js'
import {
  BadRequest, BadUpstreamResponse, LoginFailed, RpcFault, SessionBusy, SessionLost, TooManySessions,
  UpstreamTimeout, UpstreamUnavailable, ShuttingDown, outcomeOf, type CallOutcome
} from './errors.js'

/**
 * Why a session ended. `lost` and `timeout` come from the pinned socket; `expired` from idleness;
 * `logout` from the browser; `replaced` from a new login in the same browser; `shutdown` from
 * the gateway stopping; `revoked` from an operator (the operator API, plugins/admin.ts).
 */
export type EndReason = 'lost' | 'timeout' | 'expired' | 'logout' | 'replaced' | 'shutdown' | 'revoked'

/** What the browser is told on its WebSocket (CONTRACT §4): lost, expired, logout or revoked. */
export function noticeFor (reason: EndReason): 'lost' | 'expired' | 'logout' | 'revoked' {
  if (reason === 'expired') return 'expired'
  if (reason === 'revoked') return 'revoked'
  if (reason === 'logout' || reason === 'replaced') return 'logout'
  return 'lost'
}

export interface Session {
  /** The cookie's value: the session's only credential. Never shown to anyone but its browser. */
  readonly id: string
  /**
   * What operators see and name the session by (GET /admin/sessions): 128 random bits of its
   * own, so it is neither the cookie nor derivable to it.
   */
  readonly handle: string
  readonly user: string
  readonly createdAt: number
  lastActivityAt: number
  readonly upstream: PinnedUpstream
  /** Open alarm WebSockets, counted by `hold`/`release`: a session with one is never idle. */
  websockets: number
  /** Calls the browser made on it (RPC and XML proxy; not the login, logout or heartbeat). */
  calls: number
  ended: EndReason | undefined
}

export interface SessionStoreOptions {
  legacyUrl: URL
  charset: string
  timeoutMs: number
  connectTimeoutMs: number
  queueMax: number
  maxResponseBytes: number
  maxSessions: number
  idleMs: number
  loginMethod: string
  logoutMethod: string
  heartbeatMethod?: string | undefined
  heartbeatMs?: number
  /** The params of the gateway's own calls (LEGACY_*_PARAMS); default `[username, password]`, `[]`, `[]`. */
  loginParams?: CallTemplate
  logoutParams?: CallTemplate
  heartbeatParams?: CallTemplate
  logger?: { info: (obj: object, msg: string) => void, warn: (obj: object, msg: string) => void }
}

interface Tombstone { reason: EndReason, at: number }

const DEFAULT_LOGIN_PARAMS = parseCallTemplate('["{{username}}","{{password}}"]', ['username', 'password'])
const NO_PARAMS = parseCallTemplate('[]', [])

const TOMBSTONE_TTL_MS = 60 * 60 * 1000
// The headers of every XML-RPC call, one object for all (undici only reads them).
const RPC_HEADERS: Readonly<Record<string, string>> = Object.freeze({ 'content-type': 'text/xml' })
const noopLogger = { info () {}, warn () {} }

export interface SessionStoreEvents {
  end: [session: Session, reason: EndReason]
  open: [session: Session]
  /** One upstream call finished (RPC, XML proxy, login, logout or heartbeat). */
  call: [outcome: CallOutcome, seconds: number]
}

/**
 * What the browser is told when the login call fails: the legacy server's refusal (a fault) is
 * LOGIN_FAILED; a timeout, an unusable answer and params that cannot be sent keep their own
 * answer; anything else (refused, reset or closed before answering) means the legacy server is
 * not usable right now.
 */
function loginError (err: unknown): Error {
  if (err instanceof RpcFault) return new LoginFailed(err.message, { cause: err })
  if (err instanceof UpstreamTimeout || err instanceof BadUpstreamResponse || err instanceof BadRequest || err instanceof UpstreamUnavailable) return err
  // The socket closed before the login was answered (reset, closed, crashed): no session was ever
  // there to lose, the legacy server is just not usable right now.
  return new UpstreamUnavailable('the connection closed before the login was answered', { cause: err })
}

export class SessionStore extends EventEmitter<SessionStoreEvents> {
  private readonly sessions = new Map<string, Session>()
  // Ended sessions are remembered for a while so that their cookie gets SESSION_LOST ("log in
  // again") rather than UNAUTHENTICATED. Bounded by count and age.
  private readonly tombstones = new Map<string, Tombstone>()
  private loginsInFlight = 0
  // Sockets of ended sessions still finishing their calls and the legacy logout.
  private readonly closing = new Map<PinnedUpstream, Promise<void>>()
  private draining = false
  private readonly opts: Required<Omit<SessionStoreOptions, 'heartbeatMethod' | 'logger'>> & Pick<SessionStoreOptions, 'heartbeatMethod'>
  private readonly log: NonNullable<SessionStoreOptions['logger']>
  private readonly rpcPath: string
  private readonly upstreamOpts: PinnedUpstreamOptions
  private readonly xmlDeclaration: { encoding?: string }
  private readonly sweepTimer: NodeJS.Timeout
  private readonly heartbeatTimer: NodeJS.Timeout | undefined
  private heartbeatRunning = false

  constructor (opts: SessionStoreOptions) {
    super()
    this.opts = {
      heartbeatMs: 0,
      loginParams: DEFAULT_LOGIN_PARAMS,
      logoutParams: NO_PARAMS,
      heartbeatParams: NO_PARAMS,
      ...opts
    }
    this.log = opts.logger ?? noopLogger
    this.rpcPath = opts.legacyUrl.pathname + opts.legacyUrl.search
    this.upstreamOpts = {
      queueMax: opts.queueMax,
      timeoutMs: opts.timeoutMs,
      connectTimeoutMs: opts.connectTimeoutMs,
      maxResponseBytes: opts.maxResponseBytes
    }
    this.xmlDeclaration = opts.charset === 'utf-8' ? {} : { encoding: opts.charset.toUpperCase() }
    const sweepMs = Math.min(Math.max(Math.floor(opts.idleMs / 4), 50), 30_000)
    this.sweepTimer = setInterval(() => this.sweep(), sweepMs).unref()
    if (opts.heartbeatMethod !== undefined && (opts.heartbeatMs ?? 0) > 0) {
      const every = Math.max(Math.floor((opts.heartbeatMs ?? 0) / 2), 10)
      this.heartbeatTimer = setInterval(() => { this.heartbeat().catch(() => {}) }, every).unref()
    }
  }

  get size (): number {
    return this.sessions.size
  }

  get (id: string): Session | undefined {
    return this.sessions.get(id)
  }

  /** The reason a recently ended session ended, if its id is still remembered. */
  endedReason (id: string): EndReason | undefined {
    return this.tombstones.get(id)?.reason
  }

  all (): IterableIterator<Session> {
    return this.sessions.values()
  }

  touch (session: Session): void {
    session.lastActivityAt = Date.now()
  }

  /** An alarm WebSocket opened for the session: it does not expire while one is open. */
  hold (session: Session): void {
    session.websockets++
    this.touch(session)
  }

  /** An alarm WebSocket of the session closed: its idle time counts from now. */
  release (session: Session): void {
    session.websockets--
    this.touch(session)
  }

  /** Opens a dedicated connection, logs in on it, and only then creates the session. */
  async login (username: string, password: string): Promise<{ session: Session, result: JsonValue }> {
    if (this.draining) throw new ShuttingDown()
    if (this.sessions.size + this.loginsInFlight >= this.opts.maxSessions) {
      throw new TooManySessions(this.opts.maxSessions)
    }
    this.loginsInFlight++
    const upstream = new PinnedUpstream(this.opts.legacyUrl, this.upstreamOpts)
    let result: JsonValue
    try {
      result = await this.rpc(upstream, this.opts.loginMethod, this.opts.loginParams.fill({ username, password }))
    } catch (err) {
      await upstream.destroy()
      throw loginError(err)
    } finally {
      this.loginsInFlight--
    }
    if (this.draining) {
      await upstream.destroy()
      throw new ShuttingDown()
    }
    if (!upstream.connected) {
      // The socket went away with (or right after) the login's answer: no session can live on it.
      await upstream.destroy()
      throw new UpstreamUnavailable('the legacy server closed the connection after the login')
    }
    const now = Date.now()
    const session: Session = {
      id: randomBytes(32).toString('base64url'),
      handle: randomBytes(16).toString('base64url'),
      user: username,
      createdAt: now,
      lastActivityAt: now,
      upstream,
      websockets: 0,
      calls: 0,
      ended: undefined
    }
    this.sessions.set(session.id, session)
    upstream.onLost = (kind, cause) => {
      this.log.warn({ user: session.user, kind, err: cause?.message }, 'pinned legacy connection lost')
      this.end(session, kind === 'timeout' ? 'timeout' : 'lost')
    }
    this.log.info({ user: session.user, localPort: upstream.localPort }, 'session opened')
    this.emit('open', session)
    return { session, result }
  }

  /** Calls an XML-RPC method on the session's pinned socket. Throws the contract's errors. */
  async call (session: Session, method: string, params: readonly unknown[]): Promise<JsonValue> {
    this.assertUsable(session)
    session.calls++
    return await this.rpc(session.upstream, method, params)
  }

  /** Sends any HTTP request on the session's pinned socket (the /api/xml/* proxy). */
  async request (session: Session, req: PinnedRequest): Promise<PinnedResponse> {
    this.assertUsable(session)
    session.calls++
    const started = performance.now()
    try {
      const res = await session.upstream.request(req)
      this.emit('call', 'ok', (performance.now() - started) / 1000)
      return res
    } catch (err) {
      const httpErr = this.httpError(err)
      this.emit('call', outcomeOf(httpErr), (performance.now() - started) / 1000)
      throw httpErr
    }
  }

  /** The open session an operator names by its handle (never by its cookie). */
  byHandle (handle: string): Session | undefined {
    // Operators only: a scan of at most MAX_SESSIONS is cheaper than a second index to keep.
    for (const s of this.sessions.values()) if (s.handle === handle) return s
    return undefined
  }

  /**
   * Ends every open session of `user` as an operator would one (`revoked`), and settles once
   * their logouts are done; resolves to how many there were.
   */
  async revokeUser (user: string): Promise<number> {
    const theirs = [...this.sessions.values()].filter(s => s.user === user)
    await Promise.allSettled(theirs.map(s => this.logout(s, 'revoked')))
    return theirs.length
  }

  /** Calls waiting for or on a pinned socket, over all sessions. */
  queueDepth (): number {
    let n = 0
    for (const s of this.sessions.values()) n += s.upstream.pending
    return n
  }

  /** Ends a session: best-effort logout on the legacy side, then the socket is closed. */
  async logout (session: Session, reason: EndReason = 'logout'): Promise<void> {
    if (session.ended !== undefined) return
    const upstream = session.upstream
    this.end(session, reason)
    const closing = this.logoutOn(session, upstream)
    this.closing.set(upstream, closing)
    try {
      await closing
    } finally {
      this.closing.delete(upstream)
    }
  }

  private async logoutOn (session: Session, upstream: PinnedUpstream): Promise<void> {
    if (upstream.connected) {
      try {
        await this.rpc(upstream, this.opts.logoutMethod, this.opts.logoutParams.fill({ username: session.user }))
      } catch (err) {
        this.log.warn({ user: session.user, err: (err as Error).message }, 'legacy logout failed')
      }
    }
    await upstream.close()
  }

  /**
   * Stops new logins and logs every session out (shutdown); settles once every logout, including
   * those browsers started before, is done.
   */
  async drain (): Promise<void> {
    this.draining = true
    await Promise.allSettled([...this.sessions.values()].map(s => this.logout(s, 'shutdown')))
    await Promise.allSettled([...this.closing.values()])
  }

  /** Last resort at close: stops timers and destroys whatever is still open. */
  async close (): Promise<void> {
    this.draining = true
    clearInterval(this.sweepTimer)
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer)
    const open = [...this.sessions.values()]
    for (const s of open) this.end(s, 'shutdown')
    const upstreams = [...open.map(s => s.upstream), ...this.closing.keys()]
    this.closing.clear()
    await Promise.allSettled(upstreams.map(u => u.destroy()))
    this.tombstones.clear()
  }

  private end (session: Session, reason: EndReason): void {
    if (session.ended !== undefined) return
    session.ended = reason
    this.sessions.delete(session.id)
    if (reason !== 'logout' && reason !== 'replaced') {
      this.tombstones.set(session.id, { reason, at: Date.now() })
      if (this.tombstones.size > this.opts.maxSessions) {
        const oldest = this.tombstones.keys().next().value
        if (oldest !== undefined) this.tombstones.delete(oldest)
      }
    }
    if (reason === 'lost' || reason === 'timeout') session.upstream.destroy().catch(() => {})
    this.log.info({ user: session.user, reason }, 'session ended')
    this.emit('end', session, reason)
  }

  private assertUsable (session: Session): void {
    if (session.ended !== undefined) throw new SessionLost(describeEnd(session.ended))
  }

  private async rpc (upstream: PinnedUpstream, method: string, params: readonly unknown[]): Promise<JsonValue> {
    const started = performance.now()
    try {
      const value = await this.rpcOnce(upstream, method, params)
      this.emit('call', 'ok', (performance.now() - started) / 1000)
      return value
    } catch (err) {
      this.emit('call', outcomeOf(err), (performance.now() - started) / 1000)
      throw err
    }
  }

  private async rpcOnce (upstream: PinnedUpstream, method: string, params: readonly unknown[]): Promise<JsonValue> {
    let body: Buffer
    try {
      // A character LEGACY_CHARSET lacks travels as a character reference, never as "?".
      body = encodeXml(encodeCall(method, params, this.xmlDeclaration), this.opts.charset)
    } catch (err) {
      throw new BadRequest(`params cannot be sent as XML-RPC: ${(err as Error).message}`, { cause: err })
    }
    let res: PinnedResponse
    try {
      res = await upstream.request({ method: 'POST', path: this.rpcPath, headers: RPC_HEADERS, body })
    } catch (err) {
      throw this.httpError(err)
    }
    if (res.statusCode !== 200) {
      throw new BadUpstreamResponse(`HTTP ${res.statusCode} instead of 200`)
    }
    const contentType = res.headers['content-type']
    let decoded
    try {
      const text = decodeXml(res.body, typeof contentType === 'string' ? contentType : undefined, this.opts.charset)
      decoded = decodeResponse(text, { maxBytes: this.opts.maxResponseBytes })
    } catch (err) {
      if (err instanceof XmlRpcParseError) {
        throw new BadUpstreamResponse(`${err.reason} XML-RPC (${err.message})`, { cause: err })
      }
      // The answer was read whole: the socket and the session stay usable.
      if (err instanceof CharsetDecodeError) throw new BadUpstreamResponse(err.message, { cause: err })
      throw err
    }
    if (decoded.fault) throw new RpcFault(decoded.faultCode, decoded.faultString)
    return decoded.value
  }

  private httpError (err: unknown): Error {
    if (!(err instanceof UpstreamError)) return err as Error
    switch (err.kind) {
      case 'busy': return new SessionBusy(this.opts.queueMax, { cause: err })
      case 'timeout': return new UpstreamTimeout(this.opts.timeoutMs, { cause: err })
      case 'too-large':
      case 'malformed': return new BadUpstreamResponse(err.message, { cause: err })
      case 'unavailable': return new UpstreamUnavailable(err.message, { cause: err })
      case 'lost': return new SessionLost('the connection to the legacy server closed', { cause: err })
    }
  }

  private sweep (): void {
    const now = Date.now()
    for (const s of this.sessions.values()) {
      if (s.websockets === 0 && s.upstream.pending === 0 && now - s.lastActivityAt >= this.opts.idleMs) {
        this.logout(s, 'expired').catch(() => {})
      }
    }
    for (const [id, t] of this.tombstones) {
      if (now - t.at < TOMBSTONE_TTL_MS) break // insertion order = age order
      this.tombstones.delete(id)
    }
  }

  private async heartbeat (): Promise<void> {
    if (this.heartbeatRunning || this.opts.heartbeatMethod === undefined) return
    this.heartbeatRunning = true
    try {
      const now = Date.now()
      const due = [...this.sessions.values()].filter(s =>
        s.upstream.pending === 0 && now - s.upstream.lastUsedAt >= this.opts.heartbeatMs)
      await Promise.allSettled(due.map(async s => {
        try {
          await this.rpc(s.upstream, this.opts.heartbeatMethod as string, this.opts.heartbeatParams.fill({ username: s.user }))
        } catch (err: unknown) {
          this.log.warn({ user: s.user, err: (err as Error).message }, 'heartbeat failed: session lost')
          this.end(s, 'lost')
        }
      }))
    } finally {
      this.heartbeatRunning = false
    }
  }
}

export function describeEnd (reason: EndReason): string {
  switch (reason) {
    case 'lost': return 'the connection to the legacy server closed'
    case 'timeout': return 'the legacy server did not answer in time'
    case 'expired': return 'idle for too long'
    case 'logout': return 'logged out'
    case 'replaced': return 'a newer login replaced it'
    case 'shutdown': return 'the gateway shut down'
    case 'revoked': return 'ended by an operator'
  }
}
