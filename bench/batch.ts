// Batch benchmark (issue 18): ten `echo` calls as one POST /api/rpc batch against ten single
// POST /api/rpc/echo calls, side by side in one run, each user serially as fast as it can:
//
//   10 single calls   ten requests to the gateway, ten legacy round trips
//   batch (multicall) one request to the gateway, one system.multicall to the legacy server
//   batch (call by call, LEGACY_MULTICALL=false)  one request to the gateway, ten legacy round trips
//
// Per 10 calls: legacy round trips (counted in the simulator's own ledger), latency (p50/p99 of
// the ten calls or the one batch, ms) and the gateway's CPU (user + system from /proc, µs).
// The gateways run as `node dist/server.js` in child processes (one per LEGACY_MULTICALL setting);
// the simulator runs in this process, the load generator's, so that its ledger can be read
// exactly (bench/lib/serve.ts's simulator clears its own every 500 ms).
//
//   node dist/bench/batch.js [--users 1,10] [--duration 5] [--warmup 1] [--log-level warn]
//
// Environment equivalents: BENCH_USERS, BENCH_DURATION (s), BENCH_WARMUP (s), BENCH_LOG_LEVEL.
import type { RecordableHistogram } from 'node:perf_hooks'
import { Client } from 'undici'
import { createSimulator, type Simulator } from '../sim/legacy.js'
import { ECHO_PARAMS } from './lib/clients.js'
import { startChild, type Child } from './lib/processes.js'
import { latencyHistogram, latencyOf, listOption, log, machineBusyMicros, numberOption, option, pool, printResult, recordMs, round, table, type Latency } from './lib/common.js'

const CALLS = 10
const MAX_ERRORS_PER_USER = 20
const LONG = 10 * 60_000

type Mode = 'single' | 'batch' | 'batch-call-by-call'
const MODES: Mode[] = ['single', 'batch', 'batch-call-by-call']
const LABEL: Record<Mode, string> = {
  single: '10 single calls',
  batch: 'batch (multicall)',
  'batch-call-by-call': 'batch (call by call)'
}

interface Cell {
  mode: Mode
  users: number
  /** Units of 10 calls completed in the measured window. */
  tens: number
  callsPerSec: number
  errors: number
  /** Per 10 calls. */
  legacyRoundTrips: number
  latency: Latency
  /** Per 10 calls, µs. */
  gatewayCpuMicros: number
  /** CPU the machine spent outside the gateway and this process (% of one core): other tenants, kernel. */
  otherCpuPct: number
}

class UnexpectedAnswer extends Error {}

interface User {
  /** Ten calls, as singles or as one batch; throws unless all ten answered as expected. */
  ten: () => Promise<void>
  close: () => Promise<void>
}

async function postJson (c: Client, path: string, headers: Record<string, string>, body: string): Promise<{ status: number, text: string, setCookie: string | string[] | undefined }> {
  const res = await c.request({ method: 'POST', path, headers: { 'content-type': 'application/json', ...headers }, body })
  const text = await res.body.text()
  return { status: res.statusCode, text, setCookie: res.headers['set-cookie'] }
}

async function startUser (gateway: Child, name: string, mode: Mode): Promise<User> {
  const c = new Client(gateway.url, { pipelining: 1, keepAliveTimeout: LONG, keepAliveMaxTimeout: LONG, headersTimeout: LONG, bodyTimeout: LONG })
  const login = await postJson(c, '/api/login', {}, JSON.stringify({ username: name, password: name }))
  if (login.status !== 200) throw new UnexpectedAnswer(`${name}: login ${login.status} ${login.text}`)
  const setCookie = Array.isArray(login.setCookie) ? login.setCookie : login.setCookie === undefined ? [] : [login.setCookie]
  const cookie = setCookie.map(s => s.split(';')[0] ?? '').find(s => s.startsWith('lg_sid='))
  if (cookie === undefined) throw new UnexpectedAnswer(`${name}: login answered without a session cookie`)
  const single = JSON.stringify(ECHO_PARAMS)
  const batch = JSON.stringify({ calls: Array.from({ length: CALLS }, () => ({ method: 'echo', params: ECHO_PARAMS })) })
  const expected = JSON.stringify({ result: ECHO_PARAMS })
  const ten = mode === 'single'
    ? async () => {
      for (let i = 0; i < CALLS; i++) {
        const res = await postJson(c, '/api/rpc/echo', { cookie }, single)
        if (res.status !== 200) throw new UnexpectedAnswer(`${name}: ${res.status} ${res.text}`)
      }
    }
    : async () => {
      const res = await postJson(c, '/api/rpc', { cookie }, batch)
      if (res.status !== 200) throw new UnexpectedAnswer(`${name}: ${res.status} ${res.text}`)
      // Every entry must be the echo's result: an error entry (a fault, a refusal) is not a call done.
      const { results } = JSON.parse(res.text) as { results: unknown[] }
      if (results.length !== CALLS || results.some(r => JSON.stringify(r) !== expected)) throw new UnexpectedAnswer(`${name}: batch answered ${res.text.slice(0, 200)}`)
    }
  await ten()
  return {
    ten,
    async close () {
      await postJson(c, '/api/logout', { cookie }, '{}').catch(() => {})
      await c.close()
    }
  }
}

interface LoadResult { tens: number, errors: number, seconds: number, firstError: string | undefined }

async function runLoad (users: User[], ms: number, h: RecordableHistogram | undefined): Promise<LoadResult> {
  let tens = 0
  let errors = 0
  let firstError: string | undefined
  const started = performance.now()
  const stopAt = started + ms
  await Promise.all(users.map(async (user) => {
    let mine = 0
    while (performance.now() < stopAt && mine < MAX_ERRORS_PER_USER) {
      const t0 = performance.now()
      try {
        await user.ten()
        if (h !== undefined) recordMs(h, performance.now() - t0)
        tens++
      } catch (err) {
        errors++
        mine++
        firstError ??= (err as Error).message
      }
    }
  }))
  return { tens, errors, seconds: (performance.now() - started) / 1000, firstError }
}

/** Legacy requests the simulator served from now on; its ledger is emptied as it is counted, so it stays small. */
function countLegacy (sim: Simulator): { stop: () => number } {
  let count = 0
  const harvest = (): void => {
    count += sim.ledger.length
    sim.clearLedger()
  }
  harvest()
  count = 0
  const timer = setInterval(harvest, 250)
  return {
    stop () {
      clearInterval(timer)
      harvest()
      return count
    }
  }
}

function logLevel (): string {
  return option('log-level', 'BENCH_LOG_LEVEL', 'warn')
}

async function main (): Promise<void> {
  const userCounts = listOption('users', 'BENCH_USERS', [1, 10])
  const durationMs = numberOption('duration', 'BENCH_DURATION', 5) * 1000
  const warmupMs = numberOption('warmup', 'BENCH_WARMUP', 1) * 1000

  const sim = await createSimulator({ host: '127.0.0.1' })
  const env = (multicall: string): Record<string, string> => ({
    LEGACY_URL: sim.rpcUrl,
    LEGACY_MULTICALL: multicall,
    LOG_LEVEL: logLevel(),
    LOGIN_RATE_LIMIT: '0',
    COOKIE_SECURE: 'false'
  })
  let auto: Child | undefined
  let callByCall: Child | undefined
  const cells: Cell[] = []
  try {
    auto = await startChild('gateway', { env: env('auto') })
    callByCall = await startChild('gateway', { env: env('false') })
    const gatewayOf = (mode: Mode): Child => (mode === 'batch-call-by-call' ? callByCall : auto) as Child
    // Every path's code is optimized by the JIT before anything is measured.
    for (const mode of MODES) {
      const users = await Promise.all(Array.from({ length: 4 }, async (_v, i) => await startUser(gatewayOf(mode), `jit-${mode}-${i}`, mode)))
      await runLoad(users, Math.max(2000, warmupMs), undefined)
      await Promise.all(users.map(async u => await u.close()))
    }
    for (const n of userCounts) {
      for (const mode of MODES) {
        const gateway = gatewayOf(mode)
        const users: User[] = new Array(n)
        await pool(n, 16, async (i) => { users[i] = await startUser(gateway, `${mode}-n${n}-${i}`, mode) })
        await runLoad(users, warmupMs, undefined)
        const h = latencyHistogram()
        const legacy = countLegacy(sim)
        const cpu0 = { gateway: gateway.cpuMicros(), own: ownCpu(), machine: machineBusyMicros(), wall: performance.now() * 1000 }
        const r = await runLoad(users, durationMs, h)
        const cpu1 = { gateway: gateway.cpuMicros(), own: ownCpu(), machine: machineBusyMicros(), wall: performance.now() * 1000 }
        const roundTrips = legacy.stop()
        await Promise.all(users.map(async u => await u.close()))
        const per = (x: number, digits = 1): number => r.tens === 0 ? NaN : round(x / r.tens, digits)
        const ours = (cpu1.gateway - cpu0.gateway) + (cpu1.own - cpu0.own)
        cells.push({
          mode,
          users: n,
          tens: r.tens,
          callsPerSec: round(r.tens * CALLS / r.seconds, 0),
          errors: r.errors,
          legacyRoundTrips: per(roundTrips, 2),
          latency: latencyOf(h),
          gatewayCpuMicros: per(cpu1.gateway - cpu0.gateway, 0),
          otherCpuPct: round(Math.max(0, (cpu1.machine - cpu0.machine) - ours) / (cpu1.wall - cpu0.wall) * 100, 0)
        })
        log(`${mode} users=${n}: ${Math.round(r.tens * CALLS / r.seconds)} calls/s, ${per(roundTrips, 2)} legacy round trips per ${CALLS} calls` +
          (r.errors > 0 ? `, ${r.errors} errors (first: ${r.firstError ?? ''})` : ''))
      }
    }
  } finally {
    await Promise.all([auto?.stop(), callByCall?.stop()])
    await sim.close()
  }

  const cell = (mode: Mode, n: number): Cell => cells.find(c => c.mode === mode && c.users === n) as Cell
  const ratios = userCounts.map((n) => {
    const single = cell('single', n)
    const batch = cell('batch', n)
    return {
      users: n,
      /** single / batch: how many times cheaper (or faster) the batch is. */
      latencyP50: round(single.latency.p50 / batch.latency.p50),
      gatewayCpu: round(single.gatewayCpuMicros / batch.gatewayCpuMicros),
      legacyRoundTrips: round(single.legacyRoundTrips / batch.legacyRoundTrips)
    }
  })

  process.stdout.write(`${CALLS} echo calls as one batch against ${CALLS} single calls, ${durationMs / 1000} s per cell after ${warmupMs / 1000} s warm-up;\n` +
    `every figure per ${CALLS} calls: legacy round trips (simulator's ledger), latency in ms, gateway CPU (user + system) in µs;\n` +
    'other CPU %: what else the machine ran meanwhile (the kernel, other tenants; not the simulator, which runs in the load generator), % of one core\n\n')
  process.stdout.write(table(
    ['users', 'mode', 'calls/s', 'legacy round trips', 'p50', 'p99', 'gateway CPU µs', 'errors', 'other CPU %'],
    cells.map(c => [c.users, LABEL[c.mode], c.callsPerSec, c.legacyRoundTrips, c.latency.p50, c.latency.p99, c.gatewayCpuMicros, c.errors, c.otherCpuPct])
  ) + '\n\n')
  process.stdout.write(table(
    ['users', 'single/batch p50', 'single/batch gateway CPU', 'single/batch legacy round trips'],
    ratios.map(r => [r.users, r.latencyP50, r.gatewayCpu, r.legacyRoundTrips])
  ) + '\n\n')
  printResult('batch', { calls: CALLS, durationMs, warmupMs, gatewayLogLevel: logLevel(), cells, ratios })
}

function ownCpu (): number {
  const own = process.cpuUsage()
  return own.user + own.system
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/batch: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
