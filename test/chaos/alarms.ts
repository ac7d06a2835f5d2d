import { createHash } from 'node:crypto'
import dgram from 'node:dgram'
import WebSocket from 'ws'
import type { AlarmEntry } from '../../lib/alarm-feed.js'
import { type ChaosContext, now, sleep, within } from './context.js'
import { shapeProblem } from './invariants.js'
import type { Random } from './random.js'
import type { VirtualUser } from './users.js'

const hash = (data: Buffer): string => createHash('sha1').update(data).digest('base64')

// Hostile but small: the gateway refuses DOCTYPEs, so this arrives as text.
const LAUGHS = '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">' +
  '<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]>'

/** The identity of an alarm as published: its id, or the chaos token inside a malformed one. */
function keyOf (alarm: unknown): string {
  if (typeof alarm === 'string') return `id:${/chaos-\d+/.exec(alarm)?.[0] ?? '?'}`
  const raw = (alarm as { $base64?: unknown } | null)?.$base64
  if (typeof raw === 'string') return keyOf(Buffer.from(raw, 'base64').toString('latin1'))
  const a = alarm as { alarm?: { id?: unknown }, id?: unknown } | null
  const id = a?.alarm?.id ?? a?.id
  return `id:${typeof id === 'string' ? id : '?'}`
}

export type AlarmKind = 'burst' | 'single' | 'duplicate' | 'malformed' | 'json' | 'entity' | 'oversized' | 'spoofed'

/**
 * Sends alarms from the simulator (and spoofed ones from 127.0.0.2), one step at a time, and
 * writes down what the gateway should publish: every datagram from the alarm server, in order,
 * a duplicate twice, except the oversized ones (dropped and counted). Listening to the feed, it
 * keeps the published frames' hashes so that each WebSocket frame can be compared with them.
 */
export class AlarmDriver {
  /** Keys in the order the gateway should number them. */
  readonly expected: string[] = []
  /** Keys in the order the gateway numbered them. */
  readonly published: string[] = []
  /** seq → sha1 of the frame published for it. */
  readonly frames = new Map<number, string>()
  spoofedSent = 0
  oversizedSent = 0
  private simLastId = 0
  private token = 0
  private spoofer: dgram.Socket | undefined
  // Sends are serialized (readers ask for bursts while the driver runs) so that `expected` stays
  // in the order the datagrams leave.
  private lock: Promise<void> = Promise.resolve()
  private readonly listener = (entry: AlarmEntry): void => {
    this.frames.set(entry.seq, hash(entry.frame))
    const text = entry.frame.toString('utf8')
    const frame = JSON.parse(text) as { alarm: unknown }
    this.published.push(keyOf(frame.alarm))
    if (text.includes('lollol')) this.ctx.findings.fail('alarms/sim-to-gateway', { problem: 'an entity was expanded', seq: entry.seq })
  }

  /**
   * `bigAlarmBytes`: the message size of the big bursts. The replay of a full buffer of them must
   * fit what loopback socket buffers absorb at once, or a reading client is cut off (see
   * CHAOS_BIG_ALARM_BYTES in test/slow/chaos.test.ts).
   */
  constructor (private readonly ctx: ChaosContext, private readonly rng: Random, private readonly bigAlarmBytes = 2000) {}

  async start (): Promise<void> {
    this.ctx.feed.on('alarm', this.listener)
    const spoofer = dgram.createSocket('udp4')
    await new Promise<void>((resolve, reject) => {
      spoofer.once('error', reject)
      spoofer.bind(0, '127.0.0.2', () => { spoofer.off('error', reject); resolve() })
    })
    this.spoofer = spoofer
  }

  async close (): Promise<void> {
    this.ctx.feed.off('alarm', this.listener)
    const spoofer = this.spoofer
    this.spoofer = undefined
    if (spoofer !== undefined) await new Promise<void>((resolve) => spoofer.close(() => resolve()))
  }

  /**
   * Asks for a burst (a reader waits for it): `big` is ~4.5 MB of large alarms, more than the
   * kernel buffers of a paused reader hold; `fill` fills the replay buffer with large alarms;
   * `fast` is 100 small alarms back to back.
   * Resolves once sent.
   */
  async request (kind: 'big' | 'fill' | 'fast'): Promise<void> {
    await this.exclusive(async () => {
      const message = 'x'.repeat(this.bigAlarmBytes)
      if (kind === 'big') await this.sendBurst(Math.ceil(4_500_000 / this.bigAlarmBytes), { message })
      else if (kind === 'fill') await this.sendBurst(this.ctx.alarmBuffer, { message })
      else await this.sendBurst(100, {})
    })
    this.ctx.alarms.inc(`sent: ${kind} bursts (asked for by a reader)`)
  }

  private async exclusive (fn: () => Promise<void>): Promise<void> {
    const previous = this.lock
    let release = (): void => {}
    this.lock = new Promise((resolve) => { release = resolve })
    await previous
    try {
      await fn()
    } finally {
      release()
    }
  }

  private nextToken (): string {
    return `chaos-${++this.token}`
  }

  private expectSent (what: string, sent: number, wanted: number): void {
    if (sent !== wanted) this.ctx.findings.fail('alarms/sim-to-gateway', { what, problem: 'the simulator did not send every datagram (no live subscription, or a send error)', sent, wanted })
  }

  /** Generated alarms from the simulator (ids continue the simulator's counter). */
  async burst (n: number, opts: { message?: string, intervalMs?: number } = {}): Promise<void> {
    await this.exclusive(() => this.sendBurst(n, opts))
  }

  private async sendBurst (n: number, opts: { message?: string, intervalMs?: number }): Promise<void> {
    for (let i = 1; i <= n; i++) this.expected.push(`id:${this.simLastId + i}`)
    this.simLastId += n
    const sent = await this.ctx.sim.sendAlarms(n, opts)
    this.expectSent('burst', sent, n)
    this.ctx.alarms.inc('sent: generated', n)
  }

  async step (kind: AlarmKind): Promise<void> {
    await this.exclusive(() => this.sendStep(kind))
  }

  private async sendStep (kind: AlarmKind): Promise<void> {
    const sim = this.ctx.sim
    const token = this.nextToken()
    switch (kind) {
      case 'burst':
        await this.sendBurst(this.rng.int(5, 120), this.rng.chance(0.3) ? { intervalMs: 1 } : {})
        return
      case 'single':
        this.expected.push(`id:${token}`)
        this.expectSent(kind, sim.sendAlarm({ id: token, level: this.rng.pick(['critical', 'major', 'minor']), source: 'chaos', message: this.rng.text(this.rng.int(0, 40)) }), 1)
        break
      case 'duplicate': {
        // The same datagram twice is two alarms with two seqs.
        const datagram = `<alarm><id>${token}</id><level>minor</level><message>twice</message></alarm>`
        this.expected.push(`id:${token}`, `id:${token}`)
        this.expectSent(kind, sim.sendRawAlarm(datagram), 1)
        this.expectSent(kind, sim.sendRawAlarm(datagram), 1)
        break
      }
      case 'malformed': {
        const datagram = this.rng.pick([
          `<alarm><id>${token}</id><level>oops`,
          `<alarm><id>${token}</alarm>`,
          `not xml at all ${token}`,
          Buffer.concat([Buffer.from(`${token} `), Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80])])
        ])
        this.expected.push(`id:${token}`)
        this.expectSent(kind, sim.sendRawAlarm(datagram), 1)
        break
      }
      case 'json':
        this.expected.push(`id:${token}`)
        this.expectSent(kind, sim.sendRawAlarm(JSON.stringify({ id: token, level: 'minor', source: 'json' })), 1)
        break
      case 'entity':
        this.expected.push(`id:${token}`)
        this.expectSent(kind, sim.sendRawAlarm(`${LAUGHS}<alarm><id>${token}</id><message>&lol2;</message></alarm>`), 1)
        break
      case 'oversized':
        // Over ALARM_MAX_BYTES (16 KiB): dropped and counted, never numbered.
        this.oversizedSent++
        this.expectSent(kind, sim.sendRawAlarm(`<alarm><id>${token}</id><message>${'x'.repeat(20_000)}</message></alarm>`), 1)
        break
      case 'spoofed': {
        // From an address other than the alarm server's: dropped and counted.
        const spoofer = this.spoofer
        const port = this.ctx.feed.localPort
        if (spoofer === undefined || port === undefined) throw new Error('spoofer not ready')
        const n = this.rng.int(1, 5)
        for (let i = 0; i < n; i++) {
          await new Promise<void>((resolve, reject) => {
            spoofer.send(`<alarm><id>${token}</id><level>critical</level><message>spoofed</message></alarm>`, port, '127.0.0.1', (err) => err ? reject(err) : resolve())
          })
        }
        this.spoofedSent += n
        this.ctx.alarms.inc('sent: spoofed', n)
        return
      }
    }
    this.ctx.alarms.inc(`sent: ${kind}`)
  }

  async run (until: number): Promise<void> {
    // Every kind at least once, in a seeded order, then at random.
    const first = this.rng.shuffle<AlarmKind>(['burst', 'single', 'duplicate', 'malformed', 'json', 'entity', 'oversized', 'spoofed'])
    while (now() < until) {
      const kind = first.shift() ?? this.rng.weighted<AlarmKind>({ burst: 6, single: 3, duplicate: 2, malformed: 2, json: 1, entity: 1, oversized: 1, spoofed: 2 })
      await this.step(kind)
      await sleep(this.rng.int(100, 900))
    }
  }

  /** Waits until the gateway has published everything expected (bounded). */
  async settle (ms = 5000): Promise<void> {
    const end = Date.now() + ms
    while (this.published.length < this.expected.length && Date.now() < end) await sleep(20)
  }

  /** The comparison at the end: sequences equal, drops counted. */
  verify (dropped: { spoofed: number, oversized: number }): void {
    const { expected, published } = this
    let i = 0
    while (i < expected.length && i < published.length && expected[i] === published[i]) i++
    if (i < expected.length || i < published.length) {
      this.ctx.findings.fail('alarms/sim-to-gateway', {
        problem: 'the published sequence differs from what the simulator sent',
        firstDifferenceAtSeqOffset: i + 1,
        expected: expected.slice(Math.max(0, i - 2), i + 5),
        published: published.slice(Math.max(0, i - 2), i + 5),
        expectedCount: expected.length,
        publishedCount: published.length
      })
    }
    if (dropped.spoofed !== this.spoofedSent) this.ctx.findings.fail('alarms/sim-to-gateway', { problem: 'spoofed datagrams not all counted', counted: dropped.spoofed, sent: this.spoofedSent })
    if (dropped.oversized !== this.oversizedSent) this.ctx.findings.fail('alarms/sim-to-gateway', { problem: 'oversized datagrams not all counted', counted: dropped.oversized, sent: this.oversizedSent })
  }

  clear (): void {
    this.expected.length = 0
    this.published.length = 0
    this.frames.clear()
  }
}

interface Frame { type?: unknown, seq?: unknown, from?: unknown, to?: unknown, state?: unknown, instance?: unknown, lastSeq?: unknown }

/**
 * One WebSocket connection of a reader, checked frame by frame: hello first, then (after
 * ?since=) a gap frame only if the buffer really overflowed and naming exactly the missing
 * range, then alarms with consecutive seq, each byte for byte the frame the gateway published.
 */
export class Conn {
  readonly ws: WebSocket
  readonly opened: Promise<boolean>
  readonly closed: Promise<number>
  isClosed = false
  closeCode: number | undefined
  closedByUs = false
  everPaused = false
  paused = false
  /** The last seq this connection has seen (hello's lastSeq, then each alarm's). */
  cursor: number | undefined
  sessionState: string | undefined
  hello: { lastSeq: number } | undefined
  /** The last frames (type and seq), for the report of a violation. */
  readonly recent: string[] = []
  readonly openedAt = now()
  private expectNext = 0
  private needGap = false
  private framesAfterHello = 0

  constructor (
    private readonly ctx: ChaosContext,
    private readonly driver: AlarmDriver,
    readonly sessionId: string,
    cookie: string,
    readonly since: number | undefined
  ) {
    const query = since !== undefined ? `?since=${since}` : ''
    this.ws = new WebSocket(`${ctx.url.replace('http', 'ws')}/ws/alarms${query}`, { headers: { cookie, origin: ctx.url } })
    this.ws.on('message', (data: Buffer) => this.onFrame(data))
    this.ws.on('error', () => {})
    this.opened = new Promise((resolve) => {
      this.ws.once('open', () => resolve(true))
      this.ws.once('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let json: unknown
          try { json = JSON.parse(text) } catch {}
          const status = res.statusCode ?? 0
          const code = (json as { code?: unknown } | undefined)?.code
          ctx.alarms.inc(`ws upgrade refused ${status} ${String(code)}`)
          const problem = shapeProblem(status, res.headers['content-type'] ?? null, json)
          if (problem !== undefined || status !== 401) ctx.findings.fail('alarms/ws-upgrade', { status, problem, body: text.slice(0, 200) })
          resolve(false)
          // With an unexpected-response listener, ending the handshake is ours to do.
          this.ws.terminate()
        })
        res.on('error', () => { resolve(false); this.ws.terminate() })
      })
      this.ws.once('close', () => resolve(false))
    })
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code) => {
        this.isClosed = true
        this.closeCode = code
        if (this.needGap) this.ctx.findings.fail('alarms/ws-gap', { problem: 'closed before the gap frame that the buffer overflow requires', since: this.since })
        resolve(code)
      })
    })
  }

  private onFrame (data: Buffer): void {
    let frame: Frame
    try {
      frame = JSON.parse(data.toString('utf8')) as Frame
    } catch {
      this.ctx.findings.fail('alarms/ws-order', { problem: 'a frame that is not JSON', frame: data.toString('utf8').slice(0, 100) })
      return
    }
    this.recent.push(`${String(frame.type)}${frame.seq !== undefined ? ` ${String(frame.seq)}` : frame.lastSeq !== undefined ? ` lastSeq ${String(frame.lastSeq)}` : ''} @${Math.round(now() - this.openedAt)}ms`)
    if (this.recent.length > 6) this.recent.shift()
    if (this.hello === undefined) {
      if (frame.type !== 'hello' || typeof frame.lastSeq !== 'number' || frame.instance !== this.ctx.app.instanceId) {
        this.ctx.findings.fail('alarms/ws-order', { problem: 'the first frame is not hello from this instance', frame })
        return
      }
      this.hello = { lastSeq: frame.lastSeq }
      const from = this.since ?? frame.lastSeq
      this.expectNext = from + 1
      this.cursor = Math.max(from, 0)
      // More alarms were published after `since` than the buffer holds: a gap frame must say so.
      this.needGap = this.since !== undefined && frame.lastSeq - this.since > this.ctx.alarmBuffer
      return
    }
    this.framesAfterHello++
    if (this.sessionState !== undefined) {
      this.ctx.findings.fail('alarms/ws-order', { problem: 'a frame after the session notice', frame: { type: frame.type, seq: frame.seq } })
    }
    switch (frame.type) {
      case 'gap': {
        this.ctx.alarms.inc('ws gap frames')
        const since = this.since
        const expectedTo = this.hello.lastSeq - this.ctx.alarmBuffer
        if (since === undefined || this.framesAfterHello !== 1 || !this.needGap || frame.from !== since + 1 || frame.to !== expectedTo) {
          this.ctx.findings.fail('alarms/ws-gap', { problem: 'a gap frame that the buffer does not justify, or a wrong range', since, lastSeq: this.hello.lastSeq, buffer: this.ctx.alarmBuffer, frame })
        }
        this.needGap = false
        if (typeof frame.to === 'number') {
          this.expectNext = frame.to + 1
          this.cursor = frame.to
        }
        return
      }
      case 'alarm': {
        if (this.needGap) {
          this.needGap = false
          this.ctx.findings.fail('alarms/ws-gap', { problem: 'alarms missing from the replay without a gap frame', since: this.since, lastSeq: this.hello.lastSeq, firstSeq: frame.seq })
        }
        const seq = frame.seq
        if (typeof seq !== 'number') {
          this.ctx.findings.fail('alarms/ws-order', { problem: 'an alarm without seq', frame })
          return
        }
        if (seq !== this.expectNext) {
          this.ctx.findings.fail('alarms/ws-order', { problem: seq > this.expectNext ? 'alarms lost' : 'duplicate or out of order', expected: this.expectNext, got: seq, since: this.since, helloLastSeq: this.hello.lastSeq })
        }
        if (this.driver.frames.get(seq) !== hash(data)) {
          this.ctx.findings.fail('alarms/ws-order', { problem: 'the frame differs from the one published for this seq', seq })
        }
        this.expectNext = seq + 1
        this.cursor = seq
        this.ctx.alarms.inc(seq <= this.hello.lastSeq ? 'ws alarms received (replayed)' : 'ws alarms received (live)')
        return
      }
      case 'session':
        this.sessionState = String(frame.state)
        this.ctx.alarms.inc(`ws session notices: ${this.sessionState}`)
        if (!['lost', 'expired', 'logout', 'revoked'].includes(this.sessionState)) this.ctx.findings.fail('alarms/ws-order', { problem: 'unknown session state', frame })
        return
      default:
        this.ctx.findings.fail('alarms/ws-order', { problem: 'unknown frame type', frame })
    }
  }

  pause (): void {
    this.everPaused = true
    this.paused = true
    this.ws.pause()
  }

  resume (): void {
    this.paused = false
    this.ws.resume()
  }

  /** Waits until this connection has seen `seq` or is closed; false on time-out. */
  async reach (seq: number, ms: number): Promise<boolean> {
    const end = Date.now() + ms
    while (!this.isClosed && (this.cursor ?? 0) < seq) {
      if (Date.now() > end) return false
      await sleep(10)
    }
    return true
  }

  /** Closes from the browser side, after checking that every alarm published so far arrived. */
  async close (): Promise<void> {
    if (this.isClosed) return
    const target = this.ctx.feed.lastSeq
    if (!await this.reach(target, 5000)) {
      this.ctx.findings.fail('alarms/ws-drained', { problem: 'a reading client did not receive every published alarm', cursor: this.cursor, published: target, everPaused: this.everPaused })
    }
    if (this.isClosed) return
    this.closedByUs = true
    this.ws.close(1000)
    const timer = setTimeout(() => this.ws.terminate(), 3000)
    await this.closed
    clearTimeout(timer)
  }

  terminate (): void {
    this.closedByUs = true
    this.ws.terminate()
  }
}

type ReaderPlan = 'read' | 'stall' | 'bigStall' | 'dead' | 'away' | 'catchUp'

/**
 * A browser tab showing alarms for one virtual user: connects, reads, stalls, goes away, comes
 * back with ?since=, and follows its user across logins (a new session after a lost one).
 */
export class Reader {
  conn: Conn | undefined
  private cursor: number | undefined
  private bigStalls = 0
  private catchUps = 0

  constructor (
    private readonly ctx: ChaosContext,
    private readonly driver: AlarmDriver,
    private readonly vu: VirtualUser,
    private readonly rng: Random,
    /** Seq published when each session ended (the notice follows every alarm up to it). */
    private readonly endSeq: Map<string, number>
  ) {}

  /** Opens a connection for the user's current session; undefined when the upgrade was refused. */
  async connect (): Promise<Conn | undefined> {
    const session = this.vu.session
    if (session === undefined || !this.vu.live) return undefined
    const conn = new Conn(this.ctx, this.driver, session.id, session.cookie, this.cursor)
    const opened = await within(conn.opened, 10_000)
    if (opened === undefined) this.ctx.findings.fail('alarms/ws-upgrade', { problem: 'no answer to the upgrade within 10 s' })
    if (opened !== true) {
      conn.terminate()
      await conn.closed
      return undefined
    }
    this.ctx.alarms.inc(this.cursor === undefined ? 'ws connects' : 'ws reconnects with since')
    this.conn = conn
    return conn
  }

  /** Once a connection closed: was that allowed, and did it get everything it was owed? */
  private finish (conn: Conn): void {
    if (conn.cursor !== undefined) this.cursor = conn.cursor
    this.ctx.alarms.inc(`ws close codes: ${String(conn.closeCode)} (${conn.closedByUs ? 'closed by the reader' : conn.sessionState !== undefined ? `session ${conn.sessionState}` : 'closed by the gateway'}${conn.everPaused ? ', stalled' : ''})`)
    if (conn.closedByUs) return
    const code = conn.closeCode
    if (conn.sessionState !== undefined) {
      const owed = this.endSeq.get(conn.sessionId)
      if (!conn.everPaused && owed !== undefined && (conn.cursor ?? 0) < owed) {
        this.ctx.findings.fail('alarms/ws-drained', { problem: 'closed with a session notice before every alarm published before it', cursor: conn.cursor, owed, since: conn.since, helloLastSeq: conn.hello?.lastSeq, session: conn.sessionId.slice(0, 6), recent: conn.recent })
      }
      return
    }
    this.ctx.alarms.inc(`ws closed by the gateway ${String(code)}${conn.everPaused ? ' (stalled client)' : ''}`)
    if (!conn.everPaused) this.ctx.findings.fail('alarms/ws-not-cut', { code, cursor: conn.cursor, since: conn.since, recent: conn.recent })
  }

  async run (until: number): Promise<void> {
    const rng = this.rng
    while (now() < until) {
      const conn = await this.connect()
      if (conn === undefined) {
        await sleep(rng.int(30, 200))
        continue
      }
      const plan = rng.weighted<ReaderPlan>({ read: 10, stall: 3, bigStall: this.bigStalls < 1 ? 1 : 0, dead: 0.4, away: 1.5, catchUp: this.catchUps < 1 ? 1 : 0 })
      await within(conn.closed, rng.int(300, 4000))
      if (!conn.isClosed) {
        switch (plan) {
          case 'read':
            await conn.close()
            break
          case 'stall':
            // A short stall: the buffers absorb it and nothing is lost.
            conn.pause()
            this.ctx.alarms.inc('ws stalls (short)')
            await sleep(rng.int(200, 2500))
            conn.resume()
            await within(conn.closed, rng.int(200, 1500))
            await conn.close()
            break
          case 'bigStall':
            // Stalled while ~4.5 MB of alarms go by: cut off (1013) once past WS_MAX_BUFFERED_BYTES.
            this.bigStalls++
            conn.pause()
            this.ctx.alarms.inc('ws stalls (through a big burst)')
            await within(this.driver.request('big'), 20_000)
            await sleep(rng.int(100, 1000))
            conn.resume()
            await within(conn.closed, 3000)
            await conn.close()
            break
          case 'dead': {
            // Silent for more than two ping intervals: found by ping/pong and closed.
            conn.pause()
            this.ctx.alarms.inc('ws stalls (dead peer)')
            await sleep(this.ctx.wsPingMs * 2 + 1500)
            conn.resume()
            await within(conn.closed, 3000)
            if (!conn.isClosed && conn.sessionState === undefined) {
              this.ctx.findings.fail('alarms/ws-dead-peer', { cursor: conn.cursor, silentMs: this.ctx.wsPingMs * 2 + 1500 })
            }
            await conn.close()
            break
          }
          case 'catchUp': {
            // Away while large alarms fill the buffer, then back with ?since= (a large replay)
            // just as a fast burst begins: a reader that reads must not be cut off.
            this.catchUps++
            await conn.close()
            this.finish(conn)
            this.ctx.alarms.inc('ws reconnects into a burst after large alarms')
            await within(this.driver.request('fill'), 20_000)
            const next = await this.connect()
            if (next === undefined) continue
            const fast = this.driver.request('fast')
            await within(next.closed, 3000)
            await within(fast, 10_000)
            await next.close()
            this.finish(next)
            continue
          }
          case 'away':
            await conn.close()
            this.finish(conn)
            // Long enough, now and then, for more alarms than the buffer holds to go by.
            await sleep(rng.int(1000, 6000))
            continue
        }
      }
      await within(conn.closed, 5000)
      if (!conn.isClosed) conn.terminate()
      await conn.closed
      this.finish(conn)
      await sleep(rng.int(0, 300))
    }
  }

  /** After the load: connected (logging the user in again if needed) for the last alarms. */
  async ensureConnected (): Promise<boolean> {
    if (this.conn !== undefined && !this.conn.isClosed && !this.conn.paused) return true
    for (let attempt = 0; attempt < 3; attempt++) {
      if (!this.vu.live) await this.vu.login()
      if (await this.connect() !== undefined) return true
    }
    return false
  }

  /** The last connection, reading until the final alarms arrive, then closed. */
  async finalCheck (): Promise<void> {
    const conn = this.conn
    if (conn !== undefined && !conn.isClosed) {
      await conn.close()
      this.finish(conn)
    }
  }
}
