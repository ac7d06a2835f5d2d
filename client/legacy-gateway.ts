/**
 * The browser client of legacy-gateway (CONTRACT §3 and §4). No dependencies; one ES module.
 *
 *   import { createClient } from '/legacy-gateway.js'
 *   const gw = createClient()
 *   await gw.login('demo', 'demo')
 *   const me = await gw.call('whoami')
 *   const feed = gw.alarms({ onAlarm: a => console.log(a.seq, a.alarm), onSessionEnd: s => … })
 *
 * It compiles under the DOM library (client/tsconfig.json, the file the gateway serves) and under
 * Node's types (the unit tests inject `ws` and a cookie-keeping fetch), so it names no type that
 * only one of them has.
 */

/**
 * The gateway's codes (its error table, lib/errors.ts: a test keeps this list equal to it), plus
 * the client's own: NETWORK_ERROR, HTTP_ERROR, BAD_RESPONSE.
 */
export type ErrorCode =
  | 'BAD_REQUEST' | 'UNAUTHENTICATED' | 'SESSION_LOST' | 'LOGIN_FAILED' | 'FORBIDDEN' | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED' | 'PAYLOAD_TOO_LARGE' | 'UNSUPPORTED_MEDIA_TYPE' | 'RPC_FAULT' | 'SESSION_BUSY'
  | 'RATE_LIMITED' | 'BAD_UPSTREAM_RESPONSE' | 'UPSTREAM_UNAVAILABLE' | 'TOO_MANY_SESSIONS'
  | 'SHUTTING_DOWN' | 'DRAINING' | 'UPSTREAM_TIMEOUT' | 'INTERNAL_ERROR'
  | 'NETWORK_ERROR' | 'HTTP_ERROR' | 'BAD_RESPONSE'
  | (string & {})

/**
 * Everything the client throws. `status` is the HTTP status (0 when the gateway could not be
 * reached), `code` the contract's code; `faultCode` is set for RPC_FAULT. A non-2xx answer that is
 * not in the contract's shape (the legacy server's own 404 through `xml()`) has code HTTP_ERROR and
 * its parsed body in `body`.
 */
export class GatewayError extends Error {
  override name = 'GatewayError'
  readonly status: number
  readonly code: ErrorCode
  readonly faultCode?: number
  readonly body?: unknown

  constructor (status: number, code: ErrorCode, message: string, extra: { faultCode?: number, body?: unknown, cause?: unknown } = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause })
    this.status = status
    this.code = code
    if (extra.faultCode !== undefined) this.faultCode = extra.faultCode
    if (extra.body !== undefined) this.body = extra.body
  }

  /** The session is gone (never was, its legacy socket closed, an operator ended it): log in again. */
  get sessionEnded (): boolean {
    return this.code === 'UNAUTHENTICATED' || this.code === 'SESSION_LOST'
  }

  /**
   * This instance refuses for now what another instance, or the same one a little later, would
   * take: it is drained by an operator, shutting down, or full. Retry (a load balancer may send
   * the retry elsewhere).
   */
  get retryLater (): boolean {
    return this.code === 'DRAINING' || this.code === 'SHUTTING_DOWN' || this.code === 'TOO_MANY_SESSIONS'
  }
}

export interface LoginResult { user: string, result: unknown }

export interface SessionInfo { user: string, connected: boolean, createdAt: string, lastActivityAt: string }

/** A legacy method as the legacy server describes it (GET /api/methods). */
export interface MethodInfo { name: string, signatures: string[][] | null, help: string | null }
export interface MethodList { introspection: boolean, methods: MethodInfo[] }

/** One call of a batch. */
export interface BatchCall { method: string, params?: unknown[] }
/** One answer of a batch, in the order of the calls: a result, or that call's error. */
export type BatchResult<T = unknown> =
  | { result: T }
  | { error: { statusCode: number, code: ErrorCode, message: string, faultCode?: number } }

export interface XmlOptions {
  /** default GET */
  method?: string
  /** an object is sent as JSON (the gateway writes it as XML); a string is sent as text/xml */
  body?: unknown
  /** default application/json; ask for XML (`text/xml`) to get the legacy bytes as text */
  accept?: string
}

/** One alarm as the gateway forwards it; `alarm` is the datagram mapped to JSON, e.g. `{ alarm: { id, level, … } }`. */
export interface AlarmEvent {
  seq: number
  /** the gateway process that numbered it: seqs restart at 1 in a new process */
  instance: string
  receivedAt: string
  alarm: Record<string, unknown>
}

/** Why the session ended (CONTRACT §4); `revoked`: an operator ended it. Treat any other as ended too. */
export type SessionEndState = 'lost' | 'expired' | 'logout' | 'revoked' | (string & {})

export interface Gap { from: number, to: number }

export type AlarmStatus =
  | { state: 'connecting', attempt: number }
  | { state: 'open', instance: string, lastSeq: number }
  | { state: 'reconnecting', attempt: number, delayMs: number }
  | { state: 'restarted', instance: string, previousInstance: string | undefined }
  | { state: 'closed', reason: 'closed' | 'session' }

export interface AlarmHandlers {
  onAlarm: (alarm: AlarmEvent) => void
  /** The session ended (`lost`, `expired`, `logout`, `revoked`): the stream stops; log in again. */
  onSessionEnd?: (state: SessionEndState) => void
  onStatus?: (status: AlarmStatus) => void
  /** Alarms the gateway no longer buffers (they cannot be replayed). */
  onGap?: (gap: Gap) => void
  /** Resume after this seq (of the gateway process that numbered it); default: live alarms only. */
  since?: number
}

export interface AlarmSubscription {
  close: () => void
  /** The last seq delivered (or skipped by a gap); 0 before any. */
  readonly lastSeq: number
  /** The gateway process the seqs belong to, once known. */
  readonly instance: string | undefined
}

/** Injected by tests (fake timers); the browser's own by default. */
export interface Timers {
  setTimeout: (fn: () => void, ms: number) => unknown
  clearTimeout: (handle: unknown) => void
}

/** What the client needs of a WebSocket: the browser's, or `ws` in Node. */
interface Socket {
  onopen: ((ev: unknown) => void) | null
  onmessage: ((ev: { data: unknown }) => void) | null
  onclose: ((ev: unknown) => void) | null
  onerror: ((ev: unknown) => void) | null
  close: (code?: number, reason?: string) => void
}

export interface ClientOptions {
  /** The gateway's URL (may include a path prefix); default: the page's origin. */
  baseUrl?: string
  fetch?: typeof fetch
  WebSocket?: typeof WebSocket
  timers?: Timers
  /** [0, 1); Math.random by default (backoff jitter) */
  random?: () => number
  /** Reconnect backoff: full jitter, base 500 ms, cap 30 s by default. */
  backoff?: { baseMs?: number, capMs?: number }
}

export interface Client {
  login: (username: string, password: string) => Promise<LoginResult>
  call: <T = unknown>(method: string, ...params: unknown[]) => Promise<T>
  logout: () => Promise<void>
  session: () => Promise<SessionInfo>
  xml: <T = unknown>(path: string, opts?: XmlOptions) => Promise<T>
  /** The legacy methods this session may call, with signatures and help where the server gives them. */
  methods: () => Promise<MethodList>
  /**
   * Several calls in one request (one legacy round trip where the server has system.multicall).
   * A fault or a refusal is that call's `error`; the session's own failures throw a GatewayError.
   */
  batch: (calls: BatchCall[]) => Promise<BatchResult[]>
  alarms: (handlers: AlarmHandlers) => AlarmSubscription
}

const JSON_TYPE = 'application/json'
const CLOSE_NORMAL = 1000

interface ErrorBody { statusCode: number, code: string, message: string, faultCode?: number }

function isErrorBody (body: unknown): body is ErrorBody {
  if (typeof body !== 'object' || body === null) return false
  const b = body as Record<string, unknown>
  return typeof b.code === 'string' && typeof b.statusCode === 'number' && typeof b.message === 'string'
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

const isSeq = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0

/** A handler that throws must not break the client; the error still surfaces. */
function safely<A extends unknown[]> (fn: ((...args: A) => void) | undefined, ...args: A): void {
  if (fn === undefined) return
  try {
    fn(...args)
  } catch (err) {
    const report = (globalThis as { reportError?: (err: unknown) => void }).reportError
    if (typeof report === 'function') report(err)
    else console.error(err)
  }
}

function pageLocation (): { href: string, origin: string } | undefined {
  const location = (globalThis as { location?: { href: string, origin: string } }).location
  return typeof location?.href === 'string' ? location : undefined
}

export function createClient (opts: ClientOptions = {}): Client {
  const page = pageLocation()
  const fetchFn = opts.fetch ?? globalThis.fetch?.bind(globalThis)
  const timers: Timers = opts.timers ?? {
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (handle) => { clearTimeout(handle as Parameters<typeof clearTimeout>[0]) }
  }
  const random = opts.random ?? Math.random
  const baseMs = opts.backoff?.baseMs ?? 500
  const capMs = opts.backoff?.capMs ?? 30_000

  if (page === undefined && opts.baseUrl === undefined) {
    throw new TypeError('legacy-gateway: baseUrl is required outside a browser page')
  }
  // An absolute base without a trailing slash; paths are appended to it.
  const base = new URL(opts.baseUrl ?? '/', page?.href).href.replace(/\/+$/, '')
  // The session cookie is SameSite=Strict, so another origin only works through a site-wide
  // deployment (same site, other origin); it still needs `include` for the cookie to travel.
  const credentials: 'same-origin' | 'include' = page !== undefined && new URL(base).origin === page.origin ? 'same-origin' : 'include'

  async function send (path: string, init: { method: string, json?: unknown, body?: string, contentType?: string, accept?: string }): Promise<Response> {
    if (fetchFn === undefined) throw new TypeError('legacy-gateway: no fetch available; pass one in the options')
    const headers: Record<string, string> = { accept: init.accept ?? JSON_TYPE }
    let body: string | undefined
    if (init.json !== undefined) {
      headers['content-type'] = JSON_TYPE
      body = JSON.stringify(init.json)
    } else if (init.body !== undefined) {
      headers['content-type'] = init.contentType ?? 'text/xml; charset=utf-8'
      body = init.body
    }
    try {
      return await fetchFn(base + path, { method: init.method, headers, credentials, ...(body === undefined ? {} : { body }) })
    } catch (err) {
      throw new GatewayError(0, 'NETWORK_ERROR', `the gateway cannot be reached: ${(err as Error).message}`, { cause: err })
    }
  }

  async function readBody (res: Response): Promise<unknown> {
    const text = await res.text()
    if (text === '') return null
    const type = res.headers.get('content-type') ?? ''
    if (!/[/+]json\b/i.test(type)) return text
    try {
      return JSON.parse(text) as unknown
    } catch (err) {
      throw new GatewayError(res.status, 'BAD_RESPONSE', 'the gateway sent JSON that does not parse', { cause: err, body: text })
    }
  }

  /** The parsed body of a 2xx answer; anything else becomes a GatewayError. */
  async function expectOk (res: Response): Promise<unknown> {
    const body = await readBody(res)
    if (res.ok) return body
    if (isErrorBody(body)) {
      throw new GatewayError(res.status, body.code, body.message, {
        body,
        ...(typeof body.faultCode === 'number' ? { faultCode: body.faultCode } : {})
      })
    }
    const detail = typeof body === 'string' ? body : JSON.stringify(body)
    throw new GatewayError(res.status, 'HTTP_ERROR', `HTTP ${res.status}${detail ? `: ${detail.slice(0, 200)}` : ''}`, { body })
  }

  async function expectJson<T> (res: Response, check: (body: Record<string, unknown>) => boolean): Promise<T> {
    const body = await expectOk(res)
    if (!isRecord(body) || !check(body)) {
      throw new GatewayError(res.status, 'BAD_RESPONSE', 'the gateway answered in an unexpected shape', { body })
    }
    return body as T
  }

  const client: Client = {
    async login (username, password) {
      const res = await send('/api/login', { method: 'POST', json: { username, password } })
      return await expectJson<LoginResult>(res, b => typeof b.user === 'string')
    },

    async call<T = unknown> (method: string, ...params: unknown[]): Promise<T> {
      // Method names are [A-Za-z0-9_.:/-]; encodeURI leaves those alone and the gateway answers
      // 400 BAD_REQUEST for anything else.
      const res = await send(`/api/rpc/${encodeURI(method)}`, { method: 'POST', json: params })
      const body = await expectJson<{ result: T }>(res, b => 'result' in b)
      return body.result
    },

    async methods () {
      const res = await send('/api/methods', { method: 'GET' })
      return await expectJson<MethodList>(res, b => typeof b.introspection === 'boolean' && Array.isArray(b.methods))
    },

    async batch (calls) {
      const res = await send('/api/rpc', { method: 'POST', json: { calls } })
      const body = await expectJson<{ results: BatchResult[] }>(res, b => Array.isArray(b.results) && b.results.length === calls.length)
      return body.results
    },

    async logout () {
      await expectOk(await send('/api/logout', { method: 'POST', json: {} }))
    },

    async session () {
      const res = await send('/api/session', { method: 'GET' })
      return await expectJson<SessionInfo>(res, b => typeof b.user === 'string')
    },

    async xml<T = unknown> (path: string, xmlOpts: XmlOptions = {}): Promise<T> {
      const method = (xmlOpts.method ?? 'GET').toUpperCase()
      const clean = path.replace(/^\/+/, '')
      const init: { method: string, json?: unknown, body?: string, accept?: string } = { method, accept: xmlOpts.accept ?? JSON_TYPE }
      if (typeof xmlOpts.body === 'string') init.body = xmlOpts.body
      else if (xmlOpts.body !== undefined) init.json = xmlOpts.body
      return await expectOk(await send(`/api/xml/${clean}`, init)) as T
    },

    alarms (handlers) {
      return openAlarms(handlers)
    }
  }

  function alarmUrl (since: number | undefined): string {
    const url = new URL(base + '/ws/alarms')
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
    if (since !== undefined) url.searchParams.set('since', String(since))
    return url.href
  }

  function openAlarms (handlers: AlarmHandlers): AlarmSubscription {
    const found = (opts.WebSocket ?? (globalThis as { WebSocket?: typeof WebSocket }).WebSocket) as unknown as (new (url: string) => Socket) | undefined
    if (found === undefined) throw new TypeError('legacy-gateway: no WebSocket available; pass one in the options')
    const WS = found

    // undefined until the first hello when no `since` was given: the first connection takes live
    // alarms only, and the hello's lastSeq is where a reconnect resumes.
    let lastSeq: number | undefined = handlers.since !== undefined && isSeq(handlers.since) ? handlers.since : undefined
    let instance: string | undefined
    let attempt = 0
    let socket: Socket | null = null
    let timer: unknown
    let stopped = false

    const status = (s: AlarmStatus): void => { safely(handlers.onStatus, s) }

    function stop (reason: 'closed' | 'session'): void {
      if (stopped) return
      stopped = true
      if (timer !== undefined) timers.clearTimeout(timer)
      timer = undefined
      const current = socket
      socket = null
      current?.close(CLOSE_NORMAL)
      status({ state: 'closed', reason })
    }

    function sessionEnded (state: SessionEndState): void {
      if (stopped) return
      stop('session')
      safely(handlers.onSessionEnd, state)
    }

    function scheduleReconnect (): void {
      if (stopped) return
      // Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): many tabs that lost
      // the same gateway do not come back in lockstep.
      const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30))
      const delayMs = Math.floor(random() * ceiling)
      attempt++
      status({ state: 'reconnecting', attempt, delayMs })
      timer = timers.setTimeout(() => {
        timer = undefined
        connect()
      }, delayMs)
    }

    /** A browser cannot see why an upgrade was refused; /api/session can say the session is gone. */
    function afterFailedConnect (): void {
      client.session().then(scheduleReconnect, (err: unknown) => {
        if (err instanceof GatewayError && err.status === 401) sessionEnded('lost')
        else scheduleReconnect()
      })
    }

    function onFrame (ws: Socket, frame: Record<string, unknown>, greeted: () => boolean, greet: () => void): void {
      switch (frame.type) {
        case 'hello': {
          if (typeof frame.instance !== 'string' || !isSeq(frame.lastSeq)) return
          const previous = instance
          // A new process numbers from 1 again: a known instance that changed, or a lastSeq below
          // ours (a `since` from an earlier process), means our seq means nothing there.
          const restarted = (previous !== undefined && frame.instance !== previous) ||
            (lastSeq !== undefined && frame.lastSeq < lastSeq)
          instance = frame.instance
          attempt = 0
          if (restarted) {
            lastSeq = 0
            status({ state: 'restarted', instance: frame.instance, previousInstance: previous })
            // This connection replays after the old seq; reconnect at once to get all of the new
            // process's buffer.
            socket = null
            ws.close(CLOSE_NORMAL)
            connect()
            return
          }
          if (lastSeq === undefined) lastSeq = frame.lastSeq
          greet()
          status({ state: 'open', instance: frame.instance, lastSeq })
          return
        }
        case 'alarm': {
          if (!greeted() || !isSeq(frame.seq) || !isRecord(frame.alarm)) return
          const seq = frame.seq
          // A replay that overlaps what we already have (a since older than our last seq).
          if (lastSeq !== undefined && seq <= lastSeq) return
          // The contract numbers without gaps and announces lost ones; say so if it did not.
          if (lastSeq !== undefined && seq > lastSeq + 1) safely(handlers.onGap, { from: lastSeq + 1, to: seq - 1 })
          lastSeq = seq
          safely(handlers.onAlarm, { seq, instance: instance ?? '', receivedAt: typeof frame.receivedAt === 'string' ? frame.receivedAt : '', alarm: frame.alarm })
          return
        }
        case 'gap': {
          if (!greeted() || !isSeq(frame.from) || !isSeq(frame.to)) return
          if (lastSeq !== undefined && frame.to <= lastSeq) return
          safely(handlers.onGap, { from: frame.from, to: frame.to })
          lastSeq = frame.to
          return
        }
        case 'session':
          sessionEnded(typeof frame.state === 'string' ? frame.state : 'lost')
      }
      // Unknown frame types are ignored: the gateway may add some.
    }

    function connect (): void {
      if (stopped) return
      status({ state: 'connecting', attempt })
      let greeted = false
      const ws = new WS(alarmUrl(lastSeq))
      socket = ws
      ws.onmessage = (ev) => {
        if (socket !== ws || typeof ev.data !== 'string') return
        let frame: unknown
        try {
          frame = JSON.parse(ev.data)
        } catch {
          return
        }
        if (isRecord(frame)) onFrame(ws, frame, () => greeted, () => { greeted = true })
      }
      ws.onerror = () => {} // the close event follows and decides
      ws.onclose = () => {
        if (socket !== ws) return
        socket = null
        if (stopped) return
        if (greeted) scheduleReconnect()
        else afterFailedConnect()
      }
    }

    connect()

    return {
      close: () => { stop('closed') },
      get lastSeq () { return lastSeq ?? 0 },
      get instance () { return instance }
    }
  }

  return client
}

export default { createClient, GatewayError }
