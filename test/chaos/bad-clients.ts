import net from 'node:net'
import WebSocket from 'ws'
import { type ChaosContext, type Request, judge, networkFailure, now, send, sessionCookie, sleep } from './context.js'
import { shapeProblem } from './invariants.js'
import type { Random } from './random.js'
import { CALL_CODES, JSON_TYPE, LOGIN_CODES } from './users.js'

type BadAction =
  | 'forged-cookie' | 'garbage-cookie' | 'no-cookie' | 'text-plain' | 'form-login' | 'oversized-login'
  | 'oversized-call' | 'bad-json' | 'bad-schema' | 'empty-json' | 'bad-method' | 'not-found'
  | 'get-on-post' | 'wrong-password' | 'identity-in-request' | 'ws-forged-cookie' | 'ws-foreign-origin'

const ACTIONS: readonly BadAction[] = [
  'forged-cookie', 'garbage-cookie', 'no-cookie', 'text-plain', 'form-login', 'oversized-login',
  'oversized-call', 'bad-json', 'bad-schema', 'empty-json', 'bad-method', 'not-found',
  'get-on-post', 'wrong-password', 'identity-in-request', 'ws-forged-cookie', 'ws-foreign-origin'
]

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
// Over BODY_LIMIT (1 MiB).
const OVERSIZED = JSON.stringify(['x'.repeat(1024 * 1024 + 100)])

/**
 * Hostile or broken browsers: forged cookies, wrong content types, oversized and broken bodies,
 * identities smuggled in the query/headers/body, WebSockets with forged cookies or from other
 * origins. One of them ("mallory") holds a real session, so that the checks behind the session
 * check are reached too.
 */
export class BadClients {
  private mallory: string | undefined

  constructor (private readonly ctx: ChaosContext, private readonly rng: Random) {}

  private async login (): Promise<string | undefined> {
    const sent = await send(this.ctx, { method: 'POST', path: '/api/login', headers: JSON_TYPE, body: JSON.stringify({ username: 'mallory', password: 'mallory' }) })
    if (!sent.ok) {
      networkFailure(this.ctx, 'bad-client login', sent)
      return undefined
    }
    const code = judge(this.ctx, 'bad-client login', sent.answer, { allowed: LOGIN_CODES, boundMs: this.ctx.connectTimeoutMs + this.ctx.timeoutMs + this.ctx.marginMs })
    return code === 'OK' ? sessionCookie(sent.answer.setCookie) : undefined
  }

  private forgedId (): string {
    let s = ''
    for (let i = 0; i < 43; i++) s += BASE64URL[this.rng.int(0, 63)]
    return s
  }

  private async http (action: BadAction, req: Request, allowed: readonly string[], boundMs: number, okAllowed = false): Promise<unknown> {
    const sent = await send(this.ctx, req)
    this.ctx.faults.inc(`bad client: ${action}`)
    if (!sent.ok) {
      networkFailure(this.ctx, `bad ${action}`, sent, {}, 'bad-clients/answers')
      return undefined
    }
    const code = judge(this.ctx, `bad ${action}`, sent.answer, { allowed, boundMs, okAllowed, invariant: 'bad-clients/answers' })
    if (code === 'SESSION_LOST') this.mallory = undefined
    return code === 'OK' ? sent.answer.json : undefined
  }

  /** A WebSocket handshake that must be refused with `status` and a contract body. */
  private async upgrade (action: BadAction, headers: Record<string, string>, statuses: readonly number[]): Promise<void> {
    this.ctx.faults.inc(`bad client: ${action}`)
    const result = await new Promise<{ status: number, contentType: string | null, text: string }>((resolve) => {
      const ws = new WebSocket(`${this.ctx.url.replace('http', 'ws')}/ws/alarms`, { headers })
      const timer = setTimeout(() => { ws.terminate(); resolve({ status: 0, contentType: null, text: 'no answer within 5 s' }) }, 5000)
      ws.on('error', () => {})
      ws.on('open', () => { clearTimeout(timer); ws.terminate(); resolve({ status: 101, contentType: null, text: '' }) })
      ws.on('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          clearTimeout(timer)
          ws.terminate()
          resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'] ?? null, text: Buffer.concat(chunks).toString('utf8') })
        })
      })
    })
    let json: unknown
    try { json = JSON.parse(result.text) } catch {}
    this.ctx.calls.inc(`bad ${action} ${result.status} ${String((json as { code?: unknown } | undefined)?.code ?? '')}`)
    const problem = result.status === 101 ? 'the upgrade was accepted' : shapeProblem(result.status, result.contentType, json)
    if (problem !== undefined || !statuses.includes(result.status)) {
      this.ctx.findings.fail('bad-clients/answers', { action, status: result.status, problem, body: result.text.slice(0, 200) })
    }
  }

  async step (action: BadAction): Promise<void> {
    const { timeoutMs, connectTimeoutMs, marginMs } = this.ctx
    // Routes that never reach the legacy server answer within the margin.
    const quick = marginMs
    const legacy = connectTimeoutMs + timeoutMs + marginMs
    if (this.mallory === undefined) this.mallory = await this.login()
    const mallory = this.mallory ?? 'lg_sid=' + this.forgedId()
    // Behind the session check: SESSION_LOST when mallory's session died (UNAUTHENTICATED if the login failed).
    const lost = ['SESSION_LOST', 'UNAUTHENTICATED']
    switch (action) {
      case 'forged-cookie':
        await this.http(action, { method: 'POST', path: '/api/rpc/whoami', headers: { ...JSON_TYPE, cookie: 'lg_sid=' + this.forgedId() }, body: '[]' }, ['UNAUTHENTICATED'], quick)
        break
      case 'garbage-cookie': {
        const value = this.rng.pick(["' OR 1=1 --", '../../etc/passwd', 'x'.repeat(4000), '%00%ff%fe', this.forgedId() + 'A'])
        await this.http(action, { method: 'POST', path: '/api/rpc/whoami', headers: { ...JSON_TYPE, cookie: `lg_sid=${value}` }, body: '[]' }, ['UNAUTHENTICATED'], quick)
        break
      }
      case 'no-cookie':
        await this.http(action, { method: 'GET', path: '/api/xml/xml/device?id=p3' }, ['UNAUTHENTICATED'], quick)
        break
      case 'text-plain':
        await this.http(action, { method: 'POST', path: '/api/rpc/whoami', headers: { 'content-type': 'text/plain', cookie: mallory }, body: '[]' }, ['UNSUPPORTED_MEDIA_TYPE', ...lost], quick)
        break
      case 'form-login':
        await this.http(action, { method: 'POST', path: '/api/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'username=mallory&password=mallory' }, ['UNSUPPORTED_MEDIA_TYPE'], quick)
        break
      case 'oversized-login':
        await this.http(action, { method: 'POST', path: '/api/login', headers: JSON_TYPE, body: OVERSIZED }, ['PAYLOAD_TOO_LARGE'], quick + 500)
        break
      case 'oversized-call':
        await this.http(action, { method: 'POST', path: '/api/rpc/echo', headers: { ...JSON_TYPE, cookie: mallory }, body: OVERSIZED }, ['PAYLOAD_TOO_LARGE', ...lost], quick + 500)
        break
      case 'bad-json':
        await this.http(action, { method: 'POST', path: '/api/login', headers: JSON_TYPE, body: '{"username":' }, ['BAD_REQUEST'], quick)
        break
      case 'bad-schema':
        await this.http(action, { method: 'POST', path: '/api/login', headers: JSON_TYPE, body: '{"username":5,"password":[]}' }, ['BAD_REQUEST'], quick)
        break
      case 'empty-json':
        await this.http(action, { method: 'POST', path: '/api/login', headers: JSON_TYPE, body: '' }, ['BAD_REQUEST'], quick)
        break
      case 'bad-method':
        await this.http(action, { method: 'POST', path: '/api/rpc/bad%20name!', headers: { ...JSON_TYPE, cookie: mallory }, body: '[]' }, ['BAD_REQUEST', ...lost], quick)
        break
      case 'not-found':
        await this.http(action, { method: 'GET', path: `/api/nothing-${this.rng.int(0, 9)}` }, ['NOT_FOUND'], quick)
        break
      case 'get-on-post':
        await this.http(action, { method: 'GET', path: '/api/rpc/whoami', headers: { cookie: mallory } }, ['NOT_FOUND'], quick)
        break
      case 'wrong-password':
        await this.http(action, { method: 'POST', path: '/api/login', headers: JSON_TYPE, body: JSON.stringify({ username: 'mallory', password: 'guess' }) }, ['LOGIN_FAILED', ...LOGIN_CODES], legacy)
        break
      case 'identity-in-request': {
        // Another user's name in the query, a header and the body: the cookie alone decides.
        const json = await this.http(action, {
          method: 'POST',
          path: '/api/rpc/whoami?uid=u00&user=u00',
          headers: { ...JSON_TYPE, cookie: mallory, 'x-user': 'u00', 'x-forwarded-user': 'u00' },
          body: JSON.stringify({ params: [], user: 'u00', uid: 'u00' })
        }, [...CALL_CODES.filter(c => c !== 'SESSION_BUSY'), ...lost], timeoutMs + marginMs, true)
        const who = (json as { result?: { user?: unknown } } | undefined)?.result
        if (json !== undefined && who?.user !== 'mallory') this.ctx.findings.fail('affinity/own-user', { route: 'identity-in-request', answer: who })
        break
      }
      case 'ws-forged-cookie':
        await this.upgrade(action, { cookie: 'lg_sid=' + this.forgedId(), origin: this.ctx.url }, [401])
        break
      case 'ws-foreign-origin':
        await this.upgrade(action, { cookie: mallory, origin: 'https://evil.example.com' }, [403, 401])
        break
    }
  }

  async run (until: number): Promise<void> {
    // Every action once, in a seeded order, then at random.
    const first = this.rng.shuffle(ACTIONS)
    while (now() < until) {
      await this.step(first.shift() ?? this.rng.pick(ACTIONS))
      await sleep(this.rng.int(100, 600))
    }
  }

  async logout (): Promise<void> {
    if (this.mallory === undefined) return
    await send(this.ctx, { method: 'POST', path: '/api/logout', headers: { cookie: this.mallory } })
    this.mallory = undefined
  }
}

type LorisKind = 'headers' | 'silent' | 'body'

interface Loris {
  readonly kind: LorisKind
  readonly socket: net.Socket
  readonly openedAt: number
  closedAt: number | undefined
  closedByUs: boolean
  timer: NodeJS.Timeout | undefined
}

/**
 * Half-open connections: request headers sent a line at a time and never finished, connections
 * that send nothing, and bodies that never finish. The server must close them within its
 * header/request timeouts (checked every `connectionsCheckingInterval`) while serving everyone else.
 */
export class Slowloris {
  readonly all: Loris[] = []

  constructor (private readonly ctx: ChaosContext, private readonly rng: Random, private readonly port: number) {}

  private open (kind: LorisKind): void {
    const socket = net.connect({ host: '127.0.0.1', port: this.port })
    const loris: Loris = { kind, socket, openedAt: now(), closedAt: undefined, closedByUs: false, timer: undefined }
    this.all.push(loris)
    this.ctx.faults.inc(`slowloris: ${kind}`)
    socket.on('error', () => {})
    socket.on('data', () => {})
    socket.once('close', () => {
      loris.closedAt = now()
      clearInterval(loris.timer)
    })
    socket.once('connect', () => {
      let n = 0
      if (kind === 'headers') socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n')
      if (kind === 'body') socket.write('POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{"username":')
      if (kind !== 'silent') {
        loris.timer = setInterval(() => {
          if (socket.destroyed) return
          socket.write(kind === 'headers' ? `X-Slow-${n++}: ${'a'.repeat(this.rng.int(1, 20))}\r\n` : ' ')
        }, this.rng.int(1000, 3000))
      }
    })
  }

  async run (until: number, concurrent: number): Promise<void> {
    // One of each kind first, then at random.
    const first = this.rng.shuffle<LorisKind>(['headers', 'silent', 'body'])
    while (now() < until) {
      const open = this.all.filter(l => l.closedAt === undefined).length
      if (open < concurrent) this.open(first.shift() ?? this.rng.weighted<LorisKind>({ headers: 3, silent: 2, body: 2 }))
      await sleep(this.rng.int(300, 2000))
    }
  }

  /** Closes the ones still open; then every loris socket must be gone. */
  async close (): Promise<void> {
    for (const l of this.all) {
      clearInterval(l.timer)
      if (l.closedAt === undefined) {
        l.closedByUs = true
        l.socket.destroy()
      }
    }
    const end = Date.now() + 5000
    while (this.all.some(l => l.closedAt === undefined) && Date.now() < end) await sleep(20)
  }

  /**
   * A loris must have been closed by the server within its timeout plus one checking interval
   * (plus a margin), unless the run ended before that.
   */
  verify (endedAt: number, limits: { headersMs: number, requestMs: number, checkIntervalMs: number }): { closedByServer: number, lifetimesMs: number[] } {
    const lifetimes: number[] = []
    let closedByServer = 0
    for (const l of this.all) {
      const limit = (l.kind === 'body' ? limits.requestMs : limits.headersMs) + limits.checkIntervalMs + 5000
      const closedAt = l.closedByUs ? undefined : l.closedAt
      if (closedAt !== undefined) {
        closedByServer++
        lifetimes.push(Math.round(closedAt - l.openedAt))
        if (closedAt - l.openedAt > limit) this.ctx.findings.fail('slowloris/bounded', { kind: l.kind, lifetimeMs: Math.round(closedAt - l.openedAt), limitMs: limit })
      } else if (endedAt - l.openedAt > limit) {
        this.ctx.findings.fail('slowloris/bounded', { kind: l.kind, problem: 'still open past its limit', ageMs: Math.round(endedAt - l.openedAt), limitMs: limit })
      }
      if (l.closedAt === undefined) this.ctx.findings.fail('slowloris/bounded', { kind: l.kind, problem: 'the socket did not close even when destroyed' })
    }
    return { closedByServer, lifetimesMs: lifetimes }
  }
}
