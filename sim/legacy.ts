/**
 * A faithful stand-in for the legacy system of CONTRACT §1, for tests, benchmarks and demo mode:
 *
 * - XML-RPC over HTTP/1.1 keep-alive with the login bound to the TCP socket (login(u, p) succeeds
 *   when p === u); plain XML documents under /xml/* on the same origin and the same socket binding;
 * - UDP alarms to subscribers (sim/alarms.ts);
 * - the misbehaviour of field servers on demand: hangs, malformed/hostile/truncated answers, slow
 *   answers, dropped sockets, crashes and restarts, legacy charsets with or without a declaration;
 * - a JSON control API on its own port (sim/control.ts) so other processes can drive all of it.
 *
 * Fault modes apply before the method runs (hang, close, malformed, entity: no side effect) or
 * after it (slow waits first, then runs; truncated runs, then cuts the answer in half).
 */
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { decodeCall, encodeFault, encodeResponse, XmlRpcParseError, type JsonValue } from '../lib/xmlrpc.js'
import { decodeXml } from '../lib/charset.js'
import { encodeText, escapeXml } from '../lib/xml-write.js'
import { AlarmServer, type AlarmOptions, type Subscriber } from './alarms.js'
import { createControlServer } from './control.js'
import { DEFAULT_CHARSET, encodeXmlDocument, xmlContentType, type CharsetSetting } from './xmltext.js'

export type { AlarmOptions, Subscriber } from './alarms.js'
export type { CharsetSetting } from './xmltext.js'

/** Pino-compatible; the simulator is silent without one. */
export interface SimLogger {
  info (obj: object, msg?: string): void
  warn? (obj: object, msg?: string): void
  debug? (obj: object, msg?: string): void
}

export interface SimulatorOptions {
  host?: string
  rpcPort?: number
  controlPort?: number
  alarmPort?: number
  /** 0 (default): no timer alarms */
  alarmIntervalMs?: number
  /** a subscriber not re-subscribing within this is dropped */
  subscriptionTtlMs?: number
  rpcPath?: string
  /**
   * The login's shape. `positional` (default): `login(user, password)`. `struct`: what real legacy
   * logins often take, `login({user, pwd}, clientType: string, version: int)`; the version must
   * arrive as `<int>` or `<i4>` and the others as strings, else fault -32602.
   */
  loginShape?: LoginShape
  logger?: SimLogger | undefined
}

export type LoginShape = 'positional' | 'struct'

/**
 * What the simulator answered: `ok`; `fault` (an XML-RPC fault, including -32700 for an
 * unparseable call); `refused` (not logged in: fault 2 or HTTP 403); `hang` (never answered);
 * `malformed` (a malformed, entity or truncated fault-mode answer); `error` (the socket was closed
 * without an answer, or an HTTP error status such as 404/405/413).
 */
export type Outcome = 'ok' | 'fault' | 'refused' | 'hang' | 'malformed' | 'error'

export interface LedgerEntry {
  seq: number
  socketId: number
  /** the user the socket was logged in as when the request arrived */
  user: string | null
  kind: 'rpc' | 'xml'
  /** the XML-RPC method (empty when the call could not be parsed), or `${httpMethod} ${path?query}` */
  method: string
  at: number
  outcome: Outcome
}

export type FaultMode = 'hang' | 'malformed' | 'slow' | 'entity' | 'truncated' | 'close' | 'none'

export interface FaultSetting {
  mode: FaultMode
  /** the next N RPC and XML answers; default: until mode 'none' */
  count?: number
  /** slow mode's delay; default 1000 */
  delayMs?: number
}

export interface SocketInfo {
  id: number
  user: string | null
  remotePort: number
  open: boolean
}

export interface XmlRequestRecord {
  method: string
  /** path and query string as requested */
  path: string
  headers: http.IncomingHttpHeaders
  /** the raw bytes received */
  body: Buffer
}

export interface SimulatorState {
  running: boolean
  rpcUrl: string
  controlUrl: string
  alarmUrl: string
  sockets: SocketInfo[]
  socketsClosed: number
  subscribers: Subscriber[]
  alarmsSent: number
  ledger: number
  /** remaining: null means until mode 'none' */
  fault: { mode: FaultMode, remaining: number | null, delayMs: number }
  charset: CharsetSetting
  keepAliveHint: number | null
}

export interface Simulator {
  readonly rpcUrl: string
  readonly origin: string
  readonly controlUrl: string
  readonly alarmUrl: string
  readonly ledger: LedgerEntry[]
  readonly running: boolean
  readonly lastXmlRequest: XmlRequestRecord | null
  /** the last XML-RPC call as received (raw bytes), to check what a client really sent */
  readonly lastRpcRequest: XmlRequestRecord | null
  readonly subscribers: Subscriber[]
  readonly alarmsSent: number
  sockets (): SocketInfo[]
  /** RPC sockets closed since the simulator was created (monotonic, across stop/start) */
  socketsClosed (): number
  killUser (user: string): number
  killSocket (id: number): boolean
  /** like a crash: every open socket is destroyed and the port stops listening */
  stop (): Promise<void>
  /** listens again on the same port */
  start (): Promise<void>
  setFault (f: FaultSetting): void
  setCharset (charset: string, opts?: { declare?: boolean, header?: boolean }): void
  setKeepAliveHint (seconds: number | null): void
  clearLedger (): void
  /** fault none, charset utf-8, keep-alive hint off, ledger, lastXmlRequest and lastRpcRequest cleared */
  reset (): void
  /** resolves to the datagrams sent (alarms × live subscribers) */
  sendAlarms (n: number, opts?: AlarmOptions): Promise<number>
  /** one custom alarm (an `id` is added when missing); returns the subscribers it goes to */
  sendAlarm (alarm: Record<string, string>): number
  /** raw datagram to every subscriber; returns the subscribers it goes to */
  sendRawAlarm (payload: Buffer | string): number
  state (): SimulatorState
  close (): Promise<void>
}

export const MAX_BODY_BYTES = 1024 * 1024
export const MAX_SLEEP_MS = 60_000
export const MOTD = 'Welcome to the legacy simulator'

export const FAULT_LOGIN_FAILED = 1
export const FAULT_NOT_LOGGED_IN = 2
export const FAULT_SOCKET_BOUND = 3

const RPC_METHODS = ['login', 'logout', 'whoami', 'echo', 'sleep', 'fault', 'heartbeat', 'ping', 'system.listMethods'] as const
type RpcMethod = typeof RPC_METHODS[number]
const isRpcMethod = (m: string): m is RpcMethod => (RPC_METHODS as readonly string[]).includes(m)

const FAULT_MODES: readonly FaultMode[] = ['hang', 'malformed', 'slow', 'entity', 'truncated', 'close', 'none']

interface Connection {
  id: number
  socket: Socket
  user: string | null
  remotePort: number
  closed: Promise<void>
}

interface Answer {
  status: number
  headers: Record<string, string>
  body: Buffer
  outcome: Outcome
}

type RpcResult = { value: unknown } | { faultCode: number, faultString: string, refused?: boolean }

interface Device {
  id: string
  kind: string
  name: string
  status: string
  code: string
  enabled: string
  pressure: string
  location: string
}

// Values chosen to catch careless mappings: padded text, leading zeros, boolean-looking strings,
// an attribute beside text, escaped markup and non-ASCII names.
const DEVICES: readonly Device[] = [
  { id: 'p3', kind: 'pump', name: 'pump-3', status: '  ok  ', code: '010', enabled: 'true', pressure: '3.50', location: 'hall A & B' },
  { id: 'v1', kind: 'valve', name: '阀门-1', status: 'closed', code: '007', enabled: 'false', pressure: '0', location: '二号车间 <east>' }
]

function deviceXml (d: Device): string {
  return `<device id="${escapeXml(d.id, true)}" kind="${escapeXml(d.kind, true)}">` +
    `<name>${escapeXml(d.name)}</name><status>${escapeXml(d.status)}</status>` +
    `<code>${escapeXml(d.code)}</code><enabled>${escapeXml(d.enabled)}</enabled>` +
    `<pressure unit="bar">${escapeXml(d.pressure)}</pressure><location>${escapeXml(d.location)}</location>` +
    '</device>'
}

const LAUGHS = '<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n' +
  Array.from({ length: 9 }, (_, i) => ` <!ENTITY lol${i + 1} "${`&lol${i === 0 ? '' : i};`.repeat(10)}">\n`).join('') +
  ']>\n'
const ENTITY_RPC = `${LAUGHS}<methodResponse><params><param><value><string>&lol9;</string></value></param></params></methodResponse>`
const ENTITY_XML = `${LAUGHS}<devices count="1"><device id="lol"><name>&lol9;</name></device></devices>`
const MALFORMED_RPC = '<methodResponse><params><param><value><string>oops</value>'
const MALFORMED_XML = '<devices count="2"><device id="p3"><name>pump-3</devices>'

class LegacySimulator implements Simulator {
  readonly ledger: LedgerEntry[] = []
  lastXmlRequest: XmlRequestRecord | null = null
  lastRpcRequest: XmlRequestRecord | null = null

  private readonly host: string
  private rpcPort: number
  private readonly rpcPath: string
  private readonly loginShape: LoginShape
  private readonly logger: SimLogger | undefined
  private readonly server: http.Server
  private readonly control: http.Server
  private readonly alarms: AlarmServer
  private readonly controlPort: number
  private readonly connections = new Map<number, Connection>()
  private readonly bySocket = new WeakMap<Socket, Connection>()
  private lastSocketId = 0
  private closedSockets = 0
  private seq = 0
  private listening = false
  private closed = false
  private fault: { mode: FaultMode, remaining: number, delayMs: number } = { mode: 'none', remaining: 0, delayMs: 0 }
  private charset: CharsetSetting = { ...DEFAULT_CHARSET }
  private keepAliveHint: number | null = null
  private controlAddress = ''

  constructor (opts: SimulatorOptions) {
    this.host = opts.host ?? '127.0.0.1'
    this.rpcPort = opts.rpcPort ?? 0
    this.controlPort = opts.controlPort ?? 0
    this.rpcPath = opts.rpcPath ?? '/RPC2'
    this.loginShape = opts.loginShape ?? 'positional'
    this.logger = opts.logger

    this.server = http.createServer((req, res) => { this.onRequest(req, res) })
    // Legacy servers keep idle sockets (and with them the login) forever; Node's 5 s default would
    // silently log users out.
    this.server.keepAliveTimeout = 0
    this.server.maxRequestsPerSocket = 0
    this.server.headersTimeout = 60_000
    // Only covers receiving the request: `hang` and `sleep` answers may take longer.
    this.server.requestTimeout = 120_000
    this.server.timeout = 0
    this.server.on('connection', (socket: Socket) => { this.onConnection(socket) })

    this.control = createControlServer(this)
    this.alarms = new AlarmServer({
      host: this.host,
      port: opts.alarmPort ?? 0,
      subscriptionTtlMs: opts.subscriptionTtlMs ?? 90_000,
      intervalMs: opts.alarmIntervalMs ?? 0,
      charset: () => this.charset,
      logger: opts.logger
    })
  }

  async init (): Promise<void> {
    try {
      await this.alarms.listen()
      await listen(this.control, this.controlPort, this.host)
      this.controlAddress = `http://${hostForUrl(this.host)}:${(this.control.address() as AddressInfo).port}`
      await this.start()
    } catch (err) {
      await this.close()
      throw err
    }
  }

  get origin (): string {
    return `http://${hostForUrl(this.host)}:${this.rpcPort}`
  }

  get rpcUrl (): string {
    return this.origin + this.rpcPath
  }

  get controlUrl (): string {
    return this.controlAddress
  }

  get alarmUrl (): string {
    return `udp://${hostForUrl(this.host)}:${this.alarms.port}`
  }

  get running (): boolean {
    return this.listening
  }

  get subscribers (): Subscriber[] {
    return this.alarms.subscribers()
  }

  get alarmsSent (): number {
    return this.alarms.alarmsSent
  }

  sockets (): SocketInfo[] {
    return [...this.connections.values()].map((c) => ({ id: c.id, user: c.user, remotePort: c.remotePort, open: !c.socket.destroyed }))
  }

  socketsClosed (): number {
    return this.closedSockets
  }

  killUser (user: string): number {
    let killed = 0
    for (const c of this.connections.values()) {
      if (c.user === user && !c.socket.destroyed) {
        c.socket.destroy()
        killed++
      }
    }
    this.logger?.info({ user, killed }, 'killed sockets of user')
    return killed
  }

  killSocket (id: number): boolean {
    const c = this.connections.get(id)
    if (c === undefined || c.socket.destroyed) return false
    c.socket.destroy()
    this.logger?.info({ socket: id }, 'killed socket')
    return true
  }

  async stop (): Promise<void> {
    if (!this.listening) return
    this.listening = false
    const closed: Array<Promise<unknown>> = [new Promise<void>((resolve) => this.server.close(() => resolve()))]
    for (const c of this.connections.values()) {
      // the server may report closed before the sockets do; wait for both so counts are final
      closed.push(c.closed)
      c.socket.destroy()
    }
    await Promise.all(closed)
    this.logger?.info({ port: this.rpcPort }, 'rpc server stopped')
  }

  async start (): Promise<void> {
    if (this.listening) return
    if (this.closed) throw new Error('simulator is closed')
    await listen(this.server, this.rpcPort, this.host)
    this.rpcPort = (this.server.address() as AddressInfo).port
    this.listening = true
    this.logger?.info({ url: this.rpcUrl }, 'rpc server listening')
  }

  setFault (f: FaultSetting): void {
    if (!FAULT_MODES.includes(f.mode)) throw new RangeError(`unknown fault mode: ${String(f.mode)}`)
    const count = f.count ?? Infinity
    if (!(count > 0) || (Number.isFinite(count) && !Number.isInteger(count))) throw new RangeError('count must be a positive integer')
    const delayMs = f.delayMs ?? 1000
    if (!Number.isFinite(delayMs) || delayMs < 0) throw new RangeError('delayMs must be a non-negative number')
    this.fault = f.mode === 'none' ? { mode: 'none', remaining: 0, delayMs: 0 } : { mode: f.mode, remaining: count, delayMs }
    this.logger?.info({ mode: f.mode, count: f.count, delayMs: f.delayMs }, 'fault mode set')
  }

  setCharset (charset: string, opts: { declare?: boolean, header?: boolean } = {}): void {
    try {
      encodeText('<x/>', charset)
    } catch (err) {
      throw new RangeError(`unsupported charset: ${charset}`, { cause: err })
    }
    this.charset = { charset, declare: opts.declare ?? true, header: opts.header ?? false }
    this.logger?.info({ ...this.charset }, 'charset set')
  }

  setKeepAliveHint (seconds: number | null): void {
    if (seconds !== null && !(Number.isInteger(seconds) && seconds >= 0)) throw new RangeError('seconds must be a non-negative integer or null')
    this.keepAliveHint = seconds
  }

  clearLedger (): void {
    this.ledger.length = 0
  }

  sendAlarms (n: number, opts?: AlarmOptions): Promise<number> {
    return this.alarms.sendAlarms(n, opts)
  }

  sendAlarm (alarm: Record<string, string>): number {
    return this.alarms.sendAlarm(alarm)
  }

  sendRawAlarm (payload: Buffer | string): number {
    return this.alarms.sendRaw(payload)
  }

  state (): SimulatorState {
    const { mode, remaining, delayMs } = this.fault
    return {
      running: this.running,
      rpcUrl: this.rpcUrl,
      controlUrl: this.controlUrl,
      alarmUrl: this.alarmUrl,
      sockets: this.sockets(),
      socketsClosed: this.closedSockets,
      subscribers: this.subscribers,
      alarmsSent: this.alarmsSent,
      ledger: this.ledger.length,
      fault: { mode, remaining: Number.isFinite(remaining) ? remaining : null, delayMs },
      charset: { ...this.charset },
      keepAliveHint: this.keepAliveHint
    }
  }

  reset (): void {
    this.fault = { mode: 'none', remaining: 0, delayMs: 0 }
    this.charset = { ...DEFAULT_CHARSET }
    this.keepAliveHint = null
    this.lastXmlRequest = null
    this.lastRpcRequest = null
    this.clearLedger()
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.stop()
    const control = new Promise<void>((resolve) => {
      if (!this.control.listening) return resolve()
      this.control.close(() => resolve())
      this.control.closeAllConnections()
    })
    await Promise.all([control, this.alarms.close()])
  }

  private onConnection (socket: Socket): void {
    let onClose = (): void => {}
    const closed = new Promise<void>((resolve) => { onClose = resolve })
    const conn: Connection = { id: ++this.lastSocketId, socket, user: null, remotePort: socket.remotePort ?? 0, closed }
    this.connections.set(conn.id, conn)
    this.bySocket.set(socket, conn)
    socket.setNoDelay(true)
    socket.once('close', () => {
      this.connections.delete(conn.id)
      this.closedSockets++
      this.logger?.debug?.({ socket: conn.id, user: conn.user }, 'socket closed')
      onClose()
    })
  }

  private takeFault (): { mode: FaultMode, delayMs: number } {
    const { mode, delayMs } = this.fault
    if (mode !== 'none' && --this.fault.remaining <= 0) this.fault = { mode: 'none', remaining: 0, delayMs: 0 }
    return { mode, delayMs }
  }

  private onRequest (req: http.IncomingMessage, res: http.ServerResponse): void {
    const conn = this.bySocket.get(req.socket)
    if (conn === undefined) {
      req.socket.destroy()
      return
    }
    readBody(req, MAX_BODY_BYTES).then(
      (body) => this.dispatch(req, res, conn, body),
      () => { req.socket.destroy() }
    ).catch((err: unknown) => {
      this.logger?.warn?.({ err }, 'simulator request failed')
      if (!res.headersSent) this.send(res, textAnswer(500, 'internal error', 'error'))
    })
  }

  private async dispatch (req: http.IncomingMessage, res: http.ServerResponse, conn: Connection, body: Buffer | null): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://simulator')
    const isRpc = url.pathname === this.rpcPath
    let call: { method: string, params: JsonValue[] } | Error | null = null
    if (isRpc && req.method === 'POST' && body !== null) {
      this.lastRpcRequest = { method: req.method, path: req.url ?? url.pathname, headers: { ...req.headers }, body }
      call = this.parseCall(req, body)
    }

    const entry: LedgerEntry = {
      seq: ++this.seq,
      socketId: conn.id,
      user: conn.user,
      kind: isRpc ? 'rpc' : 'xml',
      method: isRpc ? (call instanceof Error || call === null ? '' : call.method) : `${req.method ?? 'GET'} ${req.url ?? '/'}`,
      at: Date.now(),
      outcome: 'ok'
    }
    this.ledger.push(entry)

    if (body === null) {
      entry.outcome = 'error'
      this.send(res, { ...textAnswer(413, 'request body too large', 'error'), headers: { 'content-type': 'text/plain', connection: 'close' } })
      return
    }

    const fault = this.takeFault()
    switch (fault.mode) {
      case 'hang':
        // The request stays open until the client gives up or the simulator stops.
        entry.outcome = 'hang'
        return
      case 'close':
        entry.outcome = 'error'
        req.socket.destroy()
        return
      case 'malformed':
        entry.outcome = 'malformed'
        this.send(res, this.xmlAnswer(200, isRpc ? MALFORMED_RPC : MALFORMED_XML, 'malformed'))
        return
      case 'entity':
        entry.outcome = 'malformed'
        this.send(res, this.xmlAnswer(200, isRpc ? ENTITY_RPC : ENTITY_XML, 'malformed'))
        return
      case 'slow':
        if (!await waitUnlessClosed(fault.delayMs, req.socket)) return
        break
    }

    const answer = isRpc
      ? await this.answerRpc(req, conn, call)
      : this.answerXml(req, url, conn, body)
    if (answer === null) return
    if (fault.mode === 'truncated') {
      answer.body = answer.body.subarray(0, Math.floor(answer.body.length / 2))
      answer.outcome = 'malformed'
    }
    entry.outcome = answer.outcome
    this.send(res, answer)
  }

  private parseCall (req: http.IncomingMessage, body: Buffer): { method: string, params: JsonValue[] } | Error {
    try {
      const text = decodeXml(body, req.headers['content-type'], this.charset.charset)
      return decodeCall(text, { maxBytes: MAX_BODY_BYTES, typed: true })
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err))
    }
  }

  private async answerRpc (req: http.IncomingMessage, conn: Connection, call: { method: string, params: JsonValue[] } | Error | null): Promise<Answer | null> {
    if (req.method !== 'POST' || call === null) {
      return { ...textAnswer(405, 'XML-RPC answers POST only', 'error'), headers: { 'content-type': 'text/plain', allow: 'POST' } }
    }
    if (call instanceof Error) {
      if (call instanceof XmlRpcParseError && call.reason === 'too-large') return textAnswer(413, 'request body too large', 'error')
      return this.rpcAnswer({ faultCode: -32700, faultString: 'parse error' })
    }
    const result = await this.runMethod(conn, call.method, call.params)
    return result === null ? null : this.rpcAnswer(result)
  }

  private async runMethod (conn: Connection, method: string, params: JsonValue[]): Promise<RpcResult | null> {
    if (!isRpcMethod(method)) return { faultCode: -32601, faultString: `method not found: ${method}` }
    if (method === 'login') return this.login(conn, params, rawParamTypes(this.lastRpcRequest))
    const user = conn.user
    if (user === null) return { faultCode: FAULT_NOT_LOGGED_IN, faultString: 'not logged in', refused: true }
    switch (method) {
      case 'logout':
        conn.user = null
        this.logger?.info({ socket: conn.id, user }, 'logout')
        return { value: true }
      case 'whoami':
        return { value: { user, socket: conn.id } }
      case 'echo':
        return { value: params }
      case 'sleep': {
        const ms = params[0]
        if (typeof ms !== 'number' || !Number.isFinite(ms)) return { faultCode: -32602, faultString: 'invalid params: sleep(ms)' }
        const capped = Math.min(Math.max(0, ms), MAX_SLEEP_MS)
        if (!await waitUnlessClosed(capped, conn.socket)) return null
        return { value: ms }
      }
      case 'fault': {
        const [code, message] = params
        if (typeof code !== 'number' || !Number.isInteger(code)) return { faultCode: -32602, faultString: 'invalid params: fault(code, message)' }
        return { faultCode: code, faultString: typeof message === 'string' ? message : 'fault' }
      }
      case 'heartbeat':
      case 'ping':
        return { value: true }
      case 'system.listMethods':
        return { value: [...RPC_METHODS] }
    }
  }

  private login (conn: Connection, params: JsonValue[], types: string[]): RpcResult {
    let user: JsonValue | undefined
    let password: JsonValue | undefined
    if (this.loginShape === 'struct') {
      const [credentials, client] = params
      const struct = credentials !== null && typeof credentials === 'object' && !Array.isArray(credentials) ? credentials : {}
      user = struct.user
      password = struct.pwd
      if (params.length !== 3 || types[0] !== 'struct' || typeof client !== 'string' || types[1] !== 'string' ||
          !(types[2] === 'int' || types[2] === 'i4') || typeof user !== 'string' || typeof password !== 'string') {
        return { faultCode: -32602, faultString: 'invalid params: login({user, pwd}, clientType, version)' }
      }
    } else {
      [user, password] = params
      if (typeof user !== 'string' || typeof password !== 'string') return { faultCode: -32602, faultString: 'invalid params: login(user, password)' }
    }
    if (user === '' || password !== user) return { faultCode: FAULT_LOGIN_FAILED, faultString: 'login failed' }
    if (conn.user !== null && conn.user !== user) return { faultCode: FAULT_SOCKET_BOUND, faultString: 'socket already bound to another user' }
    conn.user = user
    this.logger?.info({ socket: conn.id, user }, 'login')
    return { value: { user, socket: conn.id, motd: MOTD } }
  }

  private rpcAnswer (result: RpcResult): Answer {
    // xmlAnswer writes the declaration for the current charset
    if ('value' in result) return this.xmlAnswer(200, encodeResponse(result.value), 'ok')
    return this.xmlAnswer(200, encodeFault(result.faultCode, result.faultString), result.refused === true ? 'refused' : 'fault')
  }

  private answerXml (req: http.IncomingMessage, url: URL, conn: Connection, body: Buffer): Answer {
    const method = req.method ?? 'GET'
    const route = XML_ROUTES[url.pathname]
    if (route === undefined) return this.xmlAnswer(404, `<error>not found: ${escapeXml(url.pathname)}</error>`, 'error')
    if (!route.methods.includes(method)) {
      const answer = this.xmlAnswer(405, `<error>method not allowed: ${escapeXml(method)}</error>`, 'error')
      answer.headers.allow = route.methods.join(', ')
      return answer
    }
    if (conn.user === null) return this.xmlAnswer(403, '<error>not logged in</error>', 'refused')

    switch (route.name) {
      case 'devices':
        return this.xmlAnswer(200, `<devices count="${DEVICES.length}">${DEVICES.map(deviceXml).join('')}</devices>`, 'ok')
      case 'device': {
        const id = url.searchParams.get('id')
        const device = DEVICES.find((d) => d.id === id)
        if (device === undefined) return this.xmlAnswer(404, `<error>unknown device: ${escapeXml(id ?? '')}</error>`, 'error')
        return this.xmlAnswer(200, deviceXml(device), 'ok')
      }
      case 'echo': {
        this.lastXmlRequest = { method, path: req.url ?? url.pathname, headers: { ...req.headers }, body }
        const contentType = req.headers['content-type'] ?? ''
        let text: string
        try {
          text = decodeXml(body, contentType, this.charset.charset)
        } catch {
          text = body.toString('utf8')
        }
        return this.xmlAnswer(200, `<echo><method>${escapeXml(method)}</method><contentType>${escapeXml(contentType)}</contentType><body>${escapeXml(text)}</body></echo>`, 'ok')
      }
      case 'text':
        return textAnswer(200, 'hello from the legacy simulator: this is not XML\n', 'ok')
    }
  }

  private xmlAnswer (status: number, xml: string, outcome: Outcome): Answer {
    return { status, headers: { 'content-type': xmlContentType(this.charset) }, body: encodeXmlDocument(xml, this.charset), outcome }
  }

  private send (res: http.ServerResponse, answer: Answer): void {
    if (res.destroyed || res.writableEnded) return
    res.statusCode = answer.status
    for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value)
    res.setHeader('content-length', answer.body.length)
    res.setHeader('server', 'legacy-simulator/1')
    // Advertised only: like some field servers, the simulator keeps the socket open regardless.
    if (this.keepAliveHint !== null) res.setHeader('keep-alive', `timeout=${this.keepAliveHint}`)
    res.end(answer.body)
  }
}

const XML_ROUTES: Partial<Record<string, { name: 'devices' | 'device' | 'echo' | 'text', methods: readonly string[] }>> = {
  '/xml/devices': { name: 'devices', methods: ['GET', 'HEAD'] },
  '/xml/device': { name: 'device', methods: ['GET', 'HEAD'] },
  '/xml/echo': { name: 'echo', methods: ['POST', 'PUT'] },
  '/xml/text': { name: 'text', methods: ['GET', 'HEAD'] }
}

function textAnswer (status: number, text: string, outcome: Outcome): Answer {
  return { status, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: Buffer.from(text, 'utf8'), outcome }
}

/** Resolves to null when the body is over the limit (the rest is not read). */
function readBody (req: http.IncomingMessage, limit: number): Promise<Buffer | null> {
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > limit) return Promise.resolve(null)
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > limit) {
        req.off('data', onData)
        req.pause()
        resolve(null)
        return
      }
      chunks.push(chunk)
    }
    req.on('data', onData)
    req.once('end', () => resolve(Buffer.concat(chunks)))
    req.once('error', reject)
  })
}

/** false when the socket closed first: there is nobody left to answer */
function waitUnlessClosed (ms: number, socket: Socket): Promise<boolean> {
  if (socket.destroyed) return Promise.resolve(false)
  return new Promise((resolve) => {
    const onClose = (): void => {
      clearTimeout(timer)
      resolve(false)
    }
    const timer = setTimeout(() => {
      socket.off('close', onClose)
      resolve(true)
    }, ms)
    socket.once('close', onClose)
  })
}

function listen (server: http.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err)
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      resolve()
    })
  })
}

function hostForUrl (host: string): string {
  return host.includes(':') ? `[${host}]` : host
}

export async function createSimulator (opts: SimulatorOptions = {}): Promise<Simulator> {
  const sim = new LegacySimulator(opts)
  await sim.init()
  return sim
}

/**
 * The XML-RPC type of each top-level param of a call as received (`string` for an untyped
 * `<value>`): what the typed decode cannot tell apart, such as `<int>3</int>` and `<double>3</double>`.
 */
function rawParamTypes (request: XmlRequestRecord | null): string[] {
  if (request === null) return []
  const text = request.body.toString('latin1')
  const types: string[] = []
  const param = /<param>\s*<value>\s*(?:<([A-Za-z0-9.]+)\s*\/?>)?/g
  for (let m = param.exec(text); m !== null; m = param.exec(text)) types.push(m[1] ?? 'string')
  return types
}
