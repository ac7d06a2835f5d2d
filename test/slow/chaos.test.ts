/**
 * Chaos under load: virtual users call the gateway continuously while the legacy side,
 * the network and the clients misbehave, and invariants are checked on every answer, every
 * simulator ledger entry and every WebSocket frame. Everything runs in this process on loopback.
 *
 *   CHAOS_SEED          the seed (default below; printed first): the same seed replays the same
 *                       choices of every actor (timing still varies, the schedule does not)
 *   CHAOS_DURATION_MS   how long the load and the faults last (default 75 000)
 *   CHAOS_USERS         virtual users (default 50)
 *   CHAOS_READERS       alarm WebSocket readers, one per user (default 10)
 *   CHAOS_MARGIN_MS     added to every latency bound (default 1500)
 *   CHAOS_BIG_ALARM_BYTES  message size of the ~4.5 MB bursts sent past stalled readers and
 *                       before a reader comes back with ?since= into a fast burst (default 2000).
 *                       Larger, and a reader that reads more slowly than such a burst arrives
 *                       passes WS_MAX_BUFFERED_BYTES and is cut off (1013), as the contract's
 *                       slow-client bound says (alarms/ws-not-cut then fails; the reader loses
 *                       nothing and resumes with ?since=).
 *
 * Helpers live in test/chaos/; the invariants are listed in test/chaos/invariants.ts.
 */
import tap, { test } from 'tap'
import v8 from 'node:v8'
import vm from 'node:vm'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { Agent } from 'undici'
import { build, startSimulator } from '../helper.js'
import { type ChaosContext, judge, now, send, sleep, within } from '../chaos/context.js'
import { Findings, INVARIANTS, Tally, type Invariant } from '../chaos/invariants.js'
import { Random, seedFromEnv } from '../chaos/random.js'
import { SessionBook, VirtualUser, JSON_TYPE } from '../chaos/users.js'
import { AlarmDriver, Reader } from '../chaos/alarms.js'
import { BadClients, Slowloris } from '../chaos/bad-clients.js'
import { LegacyFaults } from '../chaos/legacy-faults.js'

function intEnv (name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${name} must be a non-negative integer (got ${raw})`)
  return n
}

const SEED = seedFromEnv(20250917)
const DURATION_MS = intEnv('CHAOS_DURATION_MS', 75_000)
const USERS = intEnv('CHAOS_USERS', 50)
const READERS = Math.min(intEnv('CHAOS_READERS', 10), USERS)
// Latency bound of a call: LEGACY_TIMEOUT_MS x (calls that may be ahead of it on its session + 1)
// + MARGIN_MS. The margin covers scheduling: the gateway, the simulator and ~80 clients share one
// event loop on two shared cores (event-loop delays up to ~0.5 s were seen under load).
const MARGIN_MS = intEnv('CHAOS_MARGIN_MS', 1500)
const BIG_ALARM_BYTES = intEnv('CHAOS_BIG_ALARM_BYTES', 2000)

const TIMEOUT_MS = 500
const CONNECT_TIMEOUT_MS = 1000
const QUEUE_MAX = 4
const ALARM_BUFFER = 500
const WS_PING_MS = 3000
// As serverOptions (app.ts) sets them; Node checks header/request timeouts every connectionsCheckingInterval.
const HEADERS_TIMEOUT_MS = 10_000
const REQUEST_TIMEOUT_MS = 30_000
const CONNECTIONS_CHECK_MS = 30_000
// After the run, with everything closed and after a full GC: how far memory may stay above the
// baseline taken after the warm-up. The heap bound is the leak check; RSS also holds pages V8
// and the allocator keep for reuse, hence the wider bound.
const HEAP_BOUND_MB = 16
const RSS_BOUND_MB = 96
// Active handles (sockets, servers, timers that keep the loop alive) above the baseline.
const HANDLES_SLACK = 2

// The runner kills a test file after its timeout (60 s in package.json): this one needs longer.
tap.setTimeout(DURATION_MS + 180_000)

type Gc = (options?: { type: 'major', execution: 'sync', flavor: 'last-resort' }) => void

function getGc (): Gc {
  const existing = (globalThis as { gc?: Gc }).gc
  if (typeof existing === 'function') return existing
  // Without --expose-gc: the flag can still be set at run time and gc taken from a new context.
  v8.setFlagsFromString('--expose-gc')
  return vm.runInNewContext('gc') as Gc
}

/**
 * What the process retains, not what it keeps for reuse. Since V8 12 (Node 22+) the pages a
 * collection frees stay in a pool, committed and in RSS (≈ 240 MB after this run on Node 24/26,
 * against a heap back at its baseline); a last-resort collection, the one V8 runs itself under
 * memory pressure, gives the pool back. Node 20's V8 returns the pages after an ordinary one.
 */
async function fullGc (): Promise<void> {
  const gc = getGc()
  for (let i = 0; i < 3; i++) {
    // Node 20's V8 (11.3) takes an options object as a request for a collection later, not now.
    if (Number(process.versions.v8.split('.')[0]) >= 12) gc({ type: 'major', execution: 'sync', flavor: 'last-resort' })
    else gc()
    await sleep(100)
  }
}

function handles (): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const name of process.getActiveResourcesInfo()) counts[name] = (counts[name] ?? 0) + 1
  return counts
}

const total = (h: Record<string, number>): number => Object.values(h).reduce((a, b) => a + b, 0)
const mb = (bytes: number): number => Math.round(bytes / 1024 / 1024 * 10) / 10

async function waitFor (predicate: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (!await predicate()) {
    if (Date.now() > end) return false
    await sleep(20)
  }
  return true
}

test('chaos: faults under load, invariants on every answer', { timeout: DURATION_MS + 170_000 }, async (t) => {
  const seed = SEED
  t.comment(`chaos seed ${seed} (replay: CHAOS_SEED=${seed}); load for ${DURATION_MS} ms, ${USERS} users, ${READERS} alarm readers`)
  process.stderr.write(`chaos seed ${seed} (replay with CHAOS_SEED=${seed})\n`)
  const rng = new Random(seed)
  const runStart = Date.now()
  const phases: string[] = []
  let phaseStart = Date.now()
  const phase = (name: string): void => {
    phases.push(`${name} ${((Date.now() - phaseStart) / 1000).toFixed(1)} s`)
    phaseStart = Date.now()
  }

  // Only error-level lines reach this stream: an unhandled error (500) is logged there even when
  // the browser aborted and never saw the answer.
  const errorLines: string[] = []
  const logStream = { write: (line: string) => { errorLines.push(line.slice(0, 500)) } }

  const sim = await startSimulator(t)
  const built = await build(t, {
    sim,
    listen: true,
    logStream,
    env: {
      LOG_LEVEL: 'error',
      LEGACY_TIMEOUT_MS: String(TIMEOUT_MS),
      LEGACY_CONNECT_TIMEOUT_MS: String(CONNECT_TIMEOUT_MS),
      SESSION_IDLE_MS: String(3_600_000),
      SESSION_QUEUE_MAX: String(QUEUE_MAX),
      LOGIN_RATE_LIMIT: '0',
      ALARM_URL: sim.alarmUrl,
      ALARM_RESUBSCRIBE_MS: '200',
      ALARM_BUFFER: String(ALARM_BUFFER),
      WS_MAX_BUFFERED_BYTES: String(64 * 1024),
      WS_PING_MS: String(WS_PING_MS),
      READY_PROBE_MS: '250',
      SHUTDOWN_TIMEOUT_MS: '2000'
    }
  })
  const { app, url } = built
  t.equal(app.server.headersTimeout, HEADERS_TIMEOUT_MS, 'headersTimeout from serverOptions')
  t.equal(app.server.requestTimeout, REQUEST_TIMEOUT_MS, 'requestTimeout from serverOptions')
  const feed = app.alarms
  if (feed === null) throw new Error('the alarm feed is not configured')
  const hub = app.alarmHub
  t.ok(await waitFor(() => sim.subscribers.length > 0, 5000), 'the gateway subscribed to the alarm server')

  const findings = new Findings((line) => t.comment(line))
  const ctx: ChaosContext = {
    url,
    app,
    sim,
    feed,
    agent: new Agent({ keepAliveTimeout: 10_000 }),
    findings,
    calls: new Tally(),
    faults: new Tally(),
    alarms: new Tally(),
    latency: new Map(),
    timeoutMs: TIMEOUT_MS,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    marginMs: MARGIN_MS,
    queueMax: QUEUE_MAX,
    alarmBuffer: ALARM_BUFFER,
    wsPingMs: WS_PING_MS,
    log: (line) => t.comment(line)
  }
  const book = new SessionBook(ctx)

  // Warm-up, no faults: learn the device document as the gateway maps it, and let the JIT and
  // the pools settle before the baselines are taken.
  const learned: { device?: unknown } = {}
  const users = Array.from({ length: USERS }, (_, i) => new VirtualUser(ctx, book, `u${String(i).padStart(2, '0')}`, rng.fork(`user ${i}`), () => learned.device))
  const warm = await send(ctx, { method: 'POST', path: '/api/login', headers: JSON_TYPE, body: JSON.stringify({ username: 'warmup', password: 'warmup' }) })
  const warmCookie = warm.ok ? warm.answer.setCookie[0]?.split(';')[0] ?? '' : ''
  const doc = await send(ctx, { method: 'GET', path: '/api/xml/xml/device?id=p3', headers: { cookie: warmCookie } })
  learned.device = doc.ok ? doc.answer.json : undefined
  t.equal((learned.device as { device?: Record<string, unknown> } | undefined)?.device?.['@id'], 'p3', 'warm-up: the device document')
  await send(ctx, { method: 'POST', path: '/api/logout', headers: { cookie: warmCookie } })
  await Promise.all(users.map(async (vu) => {
    for (let i = 0; i < 3; i++) {
      if (await vu.login()) {
        await vu.call('whoami')
        await vu.call('xml')
        await vu.call('echo')
        await vu.logout()
        break
      }
    }
  }))
  book.auditLedger(sim)
  await ctx.agent.close()
  ctx.agent = new Agent({ keepAliveTimeout: 10_000 })
  await waitFor(() => app.sessions.size === 0 && sim.sockets().length === 0, 5000)
  await fullGc()
  const baseline = { memory: process.memoryUsage(), handles: handles() }
  phase('setup and warm-up')
  t.comment(`baseline after warm-up: rss ${mb(baseline.memory.rss)} MB, heap used ${mb(baseline.memory.heapUsed)} MB, handles ${JSON.stringify(baseline.handles)}`)

  // Every actor, each with its own seeded stream.
  const driver = new AlarmDriver(ctx, rng.fork('alarms'), BIG_ALARM_BYTES)
  await driver.start()
  const endSeq = new Map<string, number>()
  const ends: Array<{ id: string, reason: string }> = []
  const onEnd = (session: { id: string }, reason: string): void => {
    endSeq.set(session.id, feed.lastSeq)
    ends.push({ id: session.id, reason })
  }
  app.sessions.on('end', onEnd)
  const readers = users.slice(0, READERS).map((vu, i) => new Reader(ctx, driver, vu, rng.fork(`reader ${i}`), endSeq))
  const bad = new BadClients(ctx, rng.fork('bad clients'))
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  const loris = new Slowloris(ctx, rng.fork('slowloris'), address.port)
  const faults = new LegacyFaults(ctx, book, users, rng.fork('legacy faults'))
  const loopDelay = monitorEventLoopDelay({ resolution: 20 })
  loopDelay.enable()

  const audit = setInterval(() => book.auditLedger(sim), 500)
  const health = async (until: number): Promise<void> => {
    while (now() < until) {
      const sent = await send(ctx, { method: 'GET', path: '/healthz' })
      if (sent.ok) judge(ctx, 'healthz', sent.answer, { allowed: [], boundMs: MARGIN_MS, invariant: 'health/served' })
      else findings.fail('health/served', { error: sent.message })
      await sleep(250)
    }
  }

  const started = now()
  const until = started + DURATION_MS
  // Each actor by name, so that one that does not stop can be named.
  const running = new Set<string>()
  const actor = (name: string, run: Promise<void>): Promise<void> => {
    running.add(name)
    return run.finally(() => running.delete(name))
  }
  const loops = Promise.all([
    ...users.map((vu) => actor(vu.user, vu.run(until, 20))),
    ...readers.map((reader, i) => actor(`reader ${i}`, reader.run(until))),
    actor('alarm driver', driver.run(until)),
    actor('bad clients', bad.run(until)),
    actor('slowloris', loris.run(until, 12)),
    actor('legacy faults', faults.run(until)),
    actor('health probe', health(until))
  ])
  const finished = await within(loops.then(() => true), DURATION_MS + 30_000) ?? false
  t.ok(finished, 'every actor stopped within 30 s of the end of the load (nothing hung)', { stillRunning: [...running] })
  loopDelay.disable()
  const loadEnded = now()
  phase('load')

  // The last alarms reach every reader, each connected (or back with ?since=); then they close.
  const connected = (await Promise.all(readers.map((reader) => reader.ensureConnected()))).filter(Boolean).length
  await driver.burst(20)
  await driver.settle()
  await Promise.all(readers.map((reader) => reader.finalCheck()))
  driver.verify({ spoofed: feed.stats.dropped.spoofed, oversized: feed.stats.dropped.oversized })
  t.equal(connected, READERS, 'every reader was connected for the last alarms')
  phase('last alarms')

  // Recovery: the last fault is over (LegacyFaults.run restored the simulator).
  let ready = 0
  await waitFor(async () => {
    const sent = await send(ctx, { method: 'GET', path: '/readyz' })
    ready = sent.ok ? sent.answer.status : 0
    return ready === 200 || ready === 404
  }, 10_000)
  if (ready === 404) t.comment('/readyz does not exist yet: readiness not asserted')
  else t.equal(ready, 200, 'recovery: /readyz answers 200 after the last fault (within 10 s)')
  const recoveryFailures: string[] = []
  // 50 fresh connections and logins at once, each with a 500 ms legacy deadline, on a loaded
  // machine: a transient 503/504 is a right answer (the browser retries), so a login gets three
  // tries; what the first tries answered is reported.
  const retried: string[] = []
  await Promise.all(users.map(async (vu) => {
    let loggedIn = false
    for (let attempt = 1; attempt <= 3 && !loggedIn; attempt++) {
      loggedIn = await vu.login()
      if (!loggedIn && attempt < 3) {
        retried.push(`${vu.user}: ${vu.lastLogin}`)
        await sleep(200)
      }
    }
    if (!loggedIn) {
      recoveryFailures.push(`${vu.user}: login ${vu.lastLogin}`)
      return
    }
    for (const op of ['whoami', 'xml', 'echo', 'sleep'] as const) {
      const code = await vu.call(op)
      if (code !== 'OK') recoveryFailures.push(`${vu.user}: ${op} ${code}`)
    }
  }))
  if (retried.length > 0) t.comment(`recovery: logins tried again after ${retried.join(', ')}`)
  t.same(recoveryFailures, [], 'recovery: every user logs in anew (within three tries) and every call succeeds')
  phase('recovery')

  // Everyone logs out and every client goes away.
  await Promise.all(users.map((vu) => vu.logout()))
  await bad.logout()
  clearInterval(audit)
  book.auditLedger(sim)
  book.explainEnds(ends)
  await loris.close()
  const lorisResult = loris.verify(loadEnded, { headersMs: HEADERS_TIMEOUT_MS, requestMs: REQUEST_TIMEOUT_MS, checkIntervalMs: CONNECTIONS_CHECK_MS })
  await driver.close()
  app.sessions.off('end', onEnd)
  await ctx.agent.close()
  phase('logout and close')

  // Resources back to baseline.
  const connections = (): Promise<number> => new Promise((resolve) => app.server.getConnections((_err, n) => resolve(n)))
  await waitFor(async () => app.sessions.size === 0 && sim.sockets().length === 0 && hub.clients === 0 &&
    await connections() === 0 && total(handles()) <= total(baseline.handles), 15_000)
  t.equal(app.sessions.size, 0, 'resources: no session left')
  t.same(sim.sockets(), [], 'resources: no socket left open on the legacy server')
  t.equal(hub.clients, 0, 'resources: no WebSocket client left')
  t.equal(await connections(), 0, 'resources: no connection left on the gateway')
  const after = handles()
  t.ok(total(after) <= total(baseline.handles) + HANDLES_SLACK, `resources: active handles back to baseline (+${HANDLES_SLACK})`, { baseline: baseline.handles, after })

  phase('resources')

  // Memory: the test's own records are dropped first, so what remains is the gateway's.
  driver.clear()
  book.clear()
  endSeq.clear()
  ends.length = 0
  await fullGc()
  const memory = process.memoryUsage()
  t.ok(memory.heapUsed - baseline.memory.heapUsed < HEAP_BOUND_MB * 1024 * 1024,
    `memory: heap used ${mb(memory.heapUsed)} MB vs ${mb(baseline.memory.heapUsed)} MB at the start (bound +${HEAP_BOUND_MB} MB)`)
  t.ok(memory.rss - baseline.memory.rss < RSS_BOUND_MB * 1024 * 1024,
    `memory: RSS ${mb(memory.rss)} MB vs ${mb(baseline.memory.rss)} MB at the start (bound +${RSS_BOUND_MB} MB)`)

  // Activity: the run must not pass by doing nothing.
  const ok = ['rpc whoami', 'rpc echo', 'rpc sleep', 'xml device'].reduce((n, route) => n + ctx.calls.get(`${route} 200 OK`), 0)
  t.ok(ok >= USERS * 20, `activity: ${ok} successful calls`)
  t.ok((ctx.alarms.get('ws alarms received (live)')) > 0, 'activity: alarms reached the readers')

  // One assertion per invariant.
  for (const [name, description] of Object.entries(INVARIANTS) as Array<[Invariant, string]>) {
    if (name === 'contract/no-error-log') continue
    t.equal(findings.count(name), 0, `${name}: ${description}`, { examples: findings.examples(name) })
  }
  t.same(errorLines, [], `contract/no-error-log: ${INVARIANTS['contract/no-error-log']}`)

  // The report.
  const stats = feed.stats
  const fanOut = hub.stats
  const latency = [...ctx.latency.entries()].sort(([a], [b]) => a.localeCompare(b))
    .map(([route, l]) => `${route}: max ${Math.round(l.maxMs)} ms (${Math.round(l.maxShareOfBound * 100)}% of its bound)`)
  const report = [
    `seed ${seed}; load ${DURATION_MS} ms; whole test ${Math.round((Date.now() - runStart) / 1000)} s (${phases.join(', ')})`,
    `event loop delay during the load: p99 ${Math.round(loopDelay.percentile(99) / 1e6)} ms, max ${Math.round(loopDelay.max / 1e6)} ms`,
    '-- calls by route, status and code (ledger: calls that reached the legacy server)',
    ...ctx.calls.lines(),
    '-- faults injected',
    ...ctx.faults.lines(),
    '-- alarms',
    ...ctx.alarms.lines(),
    `gateway feed: received ${stats.received}, malformed ${stats.malformed}, dropped spoofed ${stats.dropped.spoofed}, oversized ${stats.dropped.oversized}; last seq ${feed.lastSeq}`,
    `gateway hub: forwarded ${fanOut.forwarded}, slow clients cut ${fanOut.cutOff}`,
    `simulator: datagrams sent ${sim.alarmsSent}`,
    `-- slowloris: ${loris.all.length} opened, ${lorisResult.closedByServer} closed by the server (lifetimes ${lorisResult.lifetimesMs.length > 0 ? `${Math.min(...lorisResult.lifetimesMs)}–${Math.max(...lorisResult.lifetimesMs)} ms` : 'n/a'})`,
    '-- slowest answers',
    ...latency,
    `-- memory: rss ${mb(baseline.memory.rss)} → ${mb(memory.rss)} MB, heap used ${mb(baseline.memory.heapUsed)} → ${mb(memory.heapUsed)} MB; handles ${total(baseline.handles)} → ${total(after)} ${JSON.stringify(after)}`,
    `   V8 heap committed ${mb(baseline.memory.heapTotal)} → ${mb(memory.heapTotal)} MB, external ${mb(baseline.memory.external)} → ${mb(memory.external)} MB (array buffers ${mb(baseline.memory.arrayBuffers)} → ${mb(memory.arrayBuffers)}), rss outside the V8 heap ${mb(baseline.memory.rss - baseline.memory.heapTotal)} → ${mb(memory.rss - memory.heapTotal)} MB`
  ]
  for (const line of report) t.comment(line)
})
