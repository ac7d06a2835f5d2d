import { isDeepStrictEqual } from 'node:util'
import type { Simulator } from '../../sim/legacy.js'
import { type ChaosContext, type Sent, judge, networkFailure, now, send, sessionCookie, sleep } from './context.js'
import type { Random } from './random.js'

/** A session as the browser knows it, plus what the test learned about its pinned socket. */
export interface VuSession {
  readonly user: string
  /** The Cookie header (lg_sid=…). */
  readonly cookie: string
  /** The session id (the cookie's value): the gateway's Session.id. */
  readonly id: string
  /** The simulator's id of the pinned socket (the login answer names it). */
  readonly socketId: number
  /** When its socket died (killed, crashed) or the gateway reported it lost; Infinity while alive. */
  lossAt: number
  lossWhy: string
  /** Calls of this session in flight from the browser. */
  inflight: number
  /** Aborted calls may still occupy the pinned socket until these deadlines. */
  phantoms: number[]
}

/**
 * Who died when: the kill and crash times of simulator sockets, matched to sessions by the socket
 * id that the login answer names (a kill may come before the browser even learned its session).
 */
export class SessionBook {
  private readonly deaths = new Map<number, { at: number, why: string }>()
  private readonly bySocket = new Map<number, VuSession>()
  private readonly byId = new Map<string, VuSession>()
  private readonly socketUser = new Map<number, string>()
  /** Sockets the simulator closed or left hanging on a fault (from the ledger). */
  private readonly faultClosed = new Set<number>()
  private readonly hung = new Set<number>()

  constructor (private readonly ctx: ChaosContext) {}

  register (session: VuSession): void {
    this.bySocket.set(session.socketId, session)
    this.byId.set(session.id, session)
    const death = this.deaths.get(session.socketId)
    if (death !== undefined) this.lost(session, death.at, death.why)
  }

  lost (session: VuSession, at: number, why: string): void {
    if (at < session.lossAt) {
      session.lossAt = at
      session.lossWhy = why
    }
  }

  private socketDied (id: number, at: number, why: string): void {
    if (!this.deaths.has(id)) this.deaths.set(id, { at, why })
    const session = this.bySocket.get(id)
    if (session !== undefined) this.lost(session, at, why)
  }

  /** Kills a user's sockets in the simulator, noting which sockets died and when. */
  killUser (user: string): number {
    const at = now()
    for (const s of this.ctx.sim.sockets()) if (s.user === user) this.socketDied(s.id, at, 'killed')
    return this.ctx.sim.killUser(user)
  }

  /** Crashes the legacy server: every socket dies. */
  async stopSim (): Promise<void> {
    const at = now()
    for (const s of this.ctx.sim.sockets()) this.socketDied(s.id, at, 'legacy server stopped')
    await this.ctx.sim.stop()
  }

  /**
   * Reads and clears the simulator's ledger: no socket ever carries two users, no call arrives on
   * a socket that is not logged in (that would be a silent reconnect), and every call on a
   * session's socket carries that session's user.
   */
  auditLedger (sim: Simulator): void {
    const entries = sim.ledger.splice(0)
    for (const e of entries) {
      this.ctx.calls.inc(`ledger ${e.kind}`)
      // Set as the request arrives for these two fault modes (before the ledger is read).
      if (e.outcome === 'error') this.faultClosed.add(e.socketId)
      if (e.outcome === 'hang') this.hung.add(e.socketId)
      if (e.user === null) {
        if (!(e.kind === 'rpc' && e.method === 'login')) {
          this.ctx.findings.fail('affinity/no-anonymous-call', { socket: e.socketId, kind: e.kind, method: e.method })
        }
        continue
      }
      const seen = this.socketUser.get(e.socketId)
      if (seen === undefined) this.socketUser.set(e.socketId, e.user)
      else if (seen !== e.user) this.ctx.findings.fail('affinity/one-user-per-socket', { socket: e.socketId, users: [seen, e.user], method: e.method })
      const session = this.bySocket.get(e.socketId)
      if (session !== undefined && session.user !== e.user) {
        this.ctx.findings.fail('affinity/session-socket', { socket: e.socketId, sessionUser: session.user, ledgerUser: e.user, method: e.method })
      }
    }
  }

  /**
   * Every session the gateway reported lost must have lost its socket for a reason the test
   * caused: killed, the legacy server stopped, or closed by a fault. (A session lost for nothing,
   * say because a browser aborted a call, would break the README's promise.) Timeouts are only
   * counted: a slow answer plus a sleep can legitimately pass the timeout.
   */
  explainEnds (ends: ReadonlyArray<{ id: string, reason: string }>): void {
    for (const { id, reason } of ends) {
      const session = this.byId.get(id)
      this.ctx.faults.inc(`sessions ended: ${reason}`)
      if (session === undefined) continue
      if (reason === 'lost') {
        const death = this.deaths.get(session.socketId)
        const why = death?.why ?? (this.faultClosed.has(session.socketId) ? 'closed by a fault' : undefined)
        if (why === undefined) this.ctx.findings.fail('sessions/explained-loss', { user: session.user, socket: session.socketId })
      } else if (reason === 'timeout') {
        this.ctx.faults.inc(this.hung.has(session.socketId) ? 'sessions timed out: on a hung answer' : 'sessions timed out: on a slow answer')
      }
    }
  }

  /** Forgets everything (before the final memory measurement). */
  clear (): void {
    this.deaths.clear()
    this.bySocket.clear()
    this.byId.clear()
    this.socketUser.clear()
    this.faultClosed.clear()
    this.hung.clear()
  }
}

export type Op = 'whoami' | 'echo' | 'sleep' | 'xml'

// What a call of a logged-in user may answer while the legacy side misbehaves.
export const CALL_CODES = ['SESSION_LOST', 'UPSTREAM_TIMEOUT', 'BAD_UPSTREAM_RESPONSE', 'SESSION_BUSY', 'UPSTREAM_UNAVAILABLE']
export const LOGIN_CODES = ['UPSTREAM_UNAVAILABLE', 'UPSTREAM_TIMEOUT', 'BAD_UPSTREAM_RESPONSE']

export const JSON_TYPE = { 'content-type': 'application/json' }

/** A browser user: logs in, calls continuously, logs in again whenever its session is lost. */
export class VirtualUser {
  session: VuSession | undefined
  private calls = 0
  /** The user's last calls, attached to its violations (to read a failure without a replay). */
  private readonly history: string[] = []

  constructor (
    private readonly ctx: ChaosContext,
    private readonly book: SessionBook,
    readonly user: string,
    private readonly rng: Random,
    /** The device document as the gateway maps it (learned in the warm-up). */
    private readonly device: () => unknown
  ) {}

  get live (): boolean {
    return this.session !== undefined && this.session.lossAt === Infinity
  }

  /** Logs in (sending the previous cookie, as a browser would); true when a new session exists. */
  /** The outcome of the last login ("200 OK", "503 UPSTREAM_UNAVAILABLE", …), for reports. */
  lastLogin = ''

  async login (): Promise<boolean> {
    const previous = this.session
    const headers: Record<string, string> = { ...JSON_TYPE }
    if (previous !== undefined) headers.cookie = previous.cookie
    const sent = await send(this.ctx, { method: 'POST', path: '/api/login', headers, body: JSON.stringify({ username: this.user, password: this.user }) })
    if (!sent.ok) {
      networkFailure(this.ctx, 'login', sent, { user: this.user })
      this.lastLogin = 'network failure'
      return false
    }
    const a = sent.answer
    const code = judge(this.ctx, 'login', a, { allowed: LOGIN_CODES, boundMs: this.ctx.connectTimeoutMs + this.ctx.timeoutMs + this.ctx.marginMs, detail: { user: this.user } })
    this.lastLogin = `${a.status} ${code}`
    if (code !== 'OK') return false
    const body = a.json as { user?: unknown, result?: { user?: unknown, socket?: unknown } } | undefined
    const cookie = sessionCookie(a.setCookie)
    if (body?.user !== this.user || body.result?.user !== this.user || typeof body.result.socket !== 'number' || cookie === undefined) {
      this.ctx.findings.fail('affinity/own-user', { route: 'login', user: this.user, body: a.text.slice(0, 200), cookie: cookie !== undefined })
      return false
    }
    // The previous session (if still alive) was replaced: it is not used again.
    if (previous !== undefined) this.book.lost(previous, now(), 'replaced by a new login')
    this.session = {
      user: this.user,
      cookie,
      id: cookie.slice('lg_sid='.length),
      socketId: body.result.socket,
      lossAt: Infinity,
      lossWhy: '',
      inflight: 0,
      phantoms: []
    }
    this.book.register(this.session)
    return true
  }

  async logout (): Promise<void> {
    const session = this.session
    if (session === undefined) return
    const sent = await send(this.ctx, { method: 'POST', path: '/api/logout', headers: { cookie: session.cookie } })
    this.book.lost(session, now(), 'logged out')
    this.session = undefined
    if (!sent.ok) {
      networkFailure(this.ctx, 'logout', sent, { user: this.user })
      return
    }
    // Logout waits for the calls queued before it, then for the legacy logout call.
    judge(this.ctx, 'logout', sent.answer, { allowed: [], boundMs: this.ctx.timeoutMs * (this.ctx.queueMax + 3) + this.ctx.marginMs, detail: { user: this.user } })
  }

  /**
   * One call on the current session; `abortAfterMs` makes the browser give up mid-flight.
   * `burst` is how many calls are sent together (they may reach the gateway in any order).
   */
  async call (op: Op, abortAfterMs?: number, burst = 1, index = 0): Promise<string> {
    const session = this.session
    if (session === undefined) throw new Error('call without a session')
    const t0 = now()
    session.phantoms = session.phantoms.filter(d => d > t0)
    // Calls of this session that may be in the gateway with this one: those in flight before
    // the burst, aborted ones the gateway may still be working on, and the rest of the burst.
    const concurrent = session.inflight - index + session.phantoms.length + burst
    // The gateway holds at most SESSION_QUEUE_MAX calls ahead of an accepted one, each of which
    // may take up to the timeout.
    const ahead = Math.min(concurrent - 1, this.ctx.queueMax)
    const boundMs = this.ctx.timeoutMs * (ahead + 1) + this.ctx.marginMs
    const n = ++this.calls
    let path = '/api/rpc/' + op
    let method: 'GET' | 'POST' = 'POST'
    let params: unknown[] = []
    if (op === 'echo') {
      params = [this.user, n, { text: this.rng.text(this.rng.int(0, 24)), padded: '  007 ', int: this.rng.int(-(2 ** 31), 2 ** 31 - 1), real: 1.5, flag: this.rng.chance(0.5), none: null }, [n, String(n)]]
    } else if (op === 'sleep') {
      params = [this.rng.int(0, 200)]
    } else if (op === 'xml') {
      path = '/api/xml/xml/device?id=p3'
      method = 'GET'
    }
    const controller = abortAfterMs !== undefined ? new AbortController() : undefined
    const timer = controller !== undefined ? setTimeout(() => controller.abort(), abortAfterMs) : undefined
    session.inflight++
    let sent: Sent
    try {
      sent = await send(this.ctx, {
        method,
        path,
        headers: method === 'POST' ? { ...JSON_TYPE, cookie: session.cookie } : { cookie: session.cookie },
        ...(method === 'POST' ? { body: JSON.stringify(params) } : {}),
        ...(controller !== undefined ? { signal: controller.signal } : {})
      })
    } finally {
      session.inflight--
      clearTimeout(timer)
    }
    const route = op === 'xml' ? 'xml device' : `rpc ${op}`
    this.history.push(`t=${Math.round(t0)} ${op} ${Math.round(now() - t0)} ms, ${concurrent} at once: ${sent.ok ? sent.answer.status : sent.aborted ? 'aborted' : 'network error'}`)
    if (this.history.length > 6) this.history.shift()
    if (!sent.ok) {
      if (sent.aborted && controller !== undefined) {
        this.ctx.calls.inc(`${route} aborted by the browser`)
        // The gateway still reads the legacy answer to the end: the socket stays busy with it.
        session.phantoms.push(t0 + boundMs)
        return 'ABORTED'
      }
      networkFailure(this.ctx, route, sent, { user: this.user })
      return 'NETWORK'
    }
    const a = sent.answer
    const detail: Record<string, unknown> = {
      user: this.user,
      socket: session.socketId,
      concurrent,
      gatewayPending: this.ctx.app.sessions.get(session.id)?.upstream.pending,
      recent: [...this.history]
    }
    // Busy only when more calls than the queue (plus the one on the wire) may be there at once.
    const allowed = concurrent > this.ctx.queueMax + 1 ? CALL_CODES : CALL_CODES.filter(c => c !== 'SESSION_BUSY')
    const code = judge(this.ctx, route, a, { allowed, boundMs, detail })
    if (t0 > session.lossAt) this.ctx.calls.inc(`calls started after their session's socket died: ${code}`)
    if (code === 'OK') {
      if (t0 > session.lossAt) {
        this.ctx.findings.fail('affinity/no-200-after-loss', { route, ...detail, startedMsAfterLoss: Math.round(t0 - session.lossAt), loss: session.lossWhy })
      }
      this.checkAnswer(op, a.json, params, session, route)
    } else if (code === 'SESSION_LOST' || code === 'UPSTREAM_TIMEOUT') {
      this.book.lost(session, now(), code)
    }
    return code
  }

  private checkAnswer (op: Op, json: unknown, params: unknown[], session: VuSession, route: string): void {
    const result = (json as { result?: unknown } | undefined)?.result
    if (op === 'whoami') {
      const who = result as { user?: unknown, socket?: unknown } | undefined
      if (who?.user !== session.user || who.socket !== session.socketId) {
        this.ctx.findings.fail('affinity/own-user', { route, user: session.user, socket: session.socketId, answer: who })
      }
      return
    }
    const expected = op === 'xml' ? this.device() : op === 'echo' ? { result: params } : { result: params[0] }
    const got = op === 'xml' ? json : { result }
    if (!isDeepStrictEqual(got, expected)) {
      this.ctx.findings.fail('affinity/answer-matches-call', { route, user: session.user, expected, got })
    }
  }

  /** Calls continuously until `until` (performance.now() time), logging in whenever needed. */
  async run (until: number, thinkMaxMs: number): Promise<void> {
    const rng = this.rng
    const op = (): Op => rng.weighted({ whoami: 35, echo: 25, sleep: 15, xml: 25 })
    while (now() < until) {
      if (!this.live) {
        // Now and then a browser ignores SESSION_LOST and tries again with the dead cookie: the
        // answer must never be a 200 from some other socket.
        if (this.session !== undefined && this.session.lossWhy !== 'logged out' && rng.chance(0.3)) {
          for (let i = rng.int(1, 3); i > 0; i--) await this.call(op())
        }
        if (!await this.login()) {
          await sleep(rng.int(20, 200))
          continue
        }
      }
      const action = rng.weighted({ single: 90, burst: 3, abort: 4, logout: 1.5, relogin: 1.5 })
      switch (action) {
        case 'single':
          await this.call(op())
          break
        case 'burst': {
          // More calls at once than the session queue holds: the extra ones are 429 SESSION_BUSY.
          const n = rng.int(2, this.ctx.queueMax + 4)
          await Promise.all(Array.from({ length: n }, (_, i) => this.call(op(), undefined, n, i)))
          break
        }
        case 'abort':
          await this.call(rng.pick(['sleep', 'xml', 'whoami'] as const), rng.int(0, 250))
          break
        case 'logout':
          await this.logout()
          break
        case 'relogin':
          await this.login()
          break
      }
      await sleep(rng.int(0, thinkMaxMs))
    }
  }
}
