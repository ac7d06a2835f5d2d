// RPC path benchmark: N virtual users, each logged in and calling `echo` with a
// small struct serially as fast as it can, all at once, for a fixed time; the systems one after
// the other on the same simulator, in one run:
//
//   direct          each user on its own keep-alive socket straight to the simulator (the limit)
//   floor           the floor forwarder (bench/peers/floor.ts): node:http, an undici Client per
//                   login and our codec, nothing else: the cost floor of a call in Node
//   legacy-gateway  POST /api/rpc/echo with the session cookie
//   seed-style      the naive design (bench/peers/seed-style.ts)
//
// and the same for /api/xml/* (a small XML document POSTed to the simulator's /xml/echo, a 1 KB
// XML document answered, as JSON through the gateway and the floor): direct-xml, floor-xml,
// gateway-xml.
//
// The simulator, the gateway, the floor and the seed-style peer each run in their own child process
// (so each has its own event loop and its CPU is its own); this process is the load generator.
//
//   node dist/bench/rpc.js [--users 1,10,50,200] [--duration 5] [--warmup 1] [--rounds 1] [--systems a,b,…]
//   node dist/bench/rpc.js --profile [--users 50] [--duration 10] [--systems legacy-gateway|gateway-xml|floor|floor-xml]
//
// Environment equivalents: BENCH_USERS, BENCH_DURATION (s), BENCH_WARMUP (s), BENCH_ROUNDS,
// BENCH_SYSTEMS, BENCH_PROFILE=1, BENCH_PROFILE_DIR, BENCH_LOG_LEVEL (the gateway's LOG_LEVEL, default warn).
import { mkdirSync, readdirSync, statSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { RecordableHistogram } from 'node:perf_hooks'
import { directUser, directXmlUser, floorXmlUser, gatewayUser, gatewayXmlUser, seedStyleUser, type SystemName, type VirtualUser } from './lib/clients.js'
import { startChild, type Child } from './lib/processes.js'
import { flag, machineBusyMicros, latencyHistogram, latencyOf, listOption, log, numberOption, option, pool, printResult, recordMs, round, table, type Latency } from './lib/common.js'
import { summarizeProfile, profileTable } from './lib/profile.js'

const ALL_SYSTEMS: SystemName[] = ['direct', 'floor', 'legacy-gateway', 'seed-style', 'direct-xml', 'floor-xml', 'gateway-xml']

/** --systems (BENCH_SYSTEMS): a subset of ALL_SYSTEMS, run in ALL_SYSTEMS' order. */
function systemsOption (fallback: SystemName[]): SystemName[] {
  const raw = option('systems', 'BENCH_SYSTEMS', fallback.join(','))
  const names = raw.split(',').map(s => s.trim()).filter(s => s !== '')
  const unknown = names.filter(n => !(ALL_SYSTEMS as string[]).includes(n))
  if (names.length === 0 || unknown.length > 0) throw new Error(`--systems (BENCH_SYSTEMS) must be a comma-separated list of ${ALL_SYSTEMS.join(', ')}; got ${JSON.stringify(raw)}`)
  return ALL_SYSTEMS.filter(s => names.includes(s))
}

interface Targets { sim: Child, gateway: Child | undefined, seed: Child | undefined, floor: Child | undefined }

/** The process under test of a system (direct has none). */
function sutOf (system: SystemName, t: Targets): Child | undefined {
  switch (system) {
    case 'legacy-gateway': case 'gateway-xml': return t.gateway
    case 'floor': case 'floor-xml': return t.floor
    case 'seed-style': return t.seed
    default: return undefined
  }
}
const MAX_ERRORS_PER_USER = 20

interface Cell {
  system: SystemName
  users: number
  callsPerSec: number
  calls: number
  errors: number
  latency: Latency
  /** CPU time per call (user + system, µs) of each process: what the 2 cores are spent on. */
  cpuPerCall: { loadGenerator: number, simulator: number, systemUnderTest: number }
  /** CPU the machine spent outside these three processes during the cell (% of one core): other tenants, kernel. */
  otherCpuPct: number
}

interface CpuSample { loadGenerator: number, simulator: number, systemUnderTest: number, machine: number, wall: number }

function cpuNow (sim: Child, sut: Child | undefined): CpuSample {
  const own = process.cpuUsage()
  return { loadGenerator: own.user + own.system, simulator: sim.cpuMicros(), systemUnderTest: sut?.cpuMicros() ?? 0, machine: machineBusyMicros(), wall: performance.now() * 1000 }
}

function cpuAdd (a: CpuSample, from: CpuSample, to: CpuSample): CpuSample {
  return {
    loadGenerator: a.loadGenerator + to.loadGenerator - from.loadGenerator,
    simulator: a.simulator + to.simulator - from.simulator,
    systemUnderTest: a.systemUnderTest + to.systemUnderTest - from.systemUnderTest,
    machine: a.machine + to.machine - from.machine,
    wall: a.wall + to.wall - from.wall
  }
}

interface LoadResult { calls: number, errors: number, seconds: number, firstError: string | undefined }

/** Every user calls serially until `ms` have passed; latencies go to `h` (when given). */
async function runLoad (users: VirtualUser[], ms: number, h: RecordableHistogram | undefined): Promise<LoadResult> {
  let calls = 0
  let errors = 0
  let firstError: string | undefined
  const started = performance.now()
  const stopAt = started + ms
  await Promise.all(users.map(async (user) => {
    let mine = 0
    while (performance.now() < stopAt && mine < MAX_ERRORS_PER_USER) {
      const t0 = performance.now()
      try {
        await user.call()
        if (h !== undefined) recordMs(h, performance.now() - t0)
        calls++
      } catch (err) {
        errors++
        mine++
        firstError ??= (err as Error).message
      }
    }
  }))
  return { calls, errors, seconds: (performance.now() - started) / 1000, firstError }
}

async function loginUsers (system: SystemName, n: number, tag: string, targets: Targets): Promise<VirtualUser[]> {
  const users: VirtualUser[] = new Array(n)
  const rpcUrl = targets.sim.rpcUrl as string
  const url = (): string => (sutOf(system, targets) as Child).url
  await pool(n, 16, async (i) => {
    const name = `${tag}-${i}`
    switch (system) {
      case 'direct': users[i] = await directUser(rpcUrl, name); break
      case 'floor': users[i] = await seedStyleUser(url(), name, 'floor'); break
      case 'legacy-gateway': users[i] = await gatewayUser(url(), name); break
      case 'seed-style': users[i] = await seedStyleUser(url(), name); break
      case 'direct-xml': users[i] = await directXmlUser(rpcUrl, name); break
      case 'floor-xml': users[i] = await floorXmlUser(url(), name); break
      case 'gateway-xml': users[i] = await gatewayXmlUser(url(), name); break
    }
  })
  return users
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] as number : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

async function profile (): Promise<void> {
  const users = listOption('users', 'BENCH_USERS', [50])[0] as number
  const durationMs = numberOption('duration', 'BENCH_DURATION', 10) * 1000
  const warmupMs = numberOption('warmup', 'BENCH_WARMUP', 1) * 1000
  const dir = path.resolve(option('profile-dir', 'BENCH_PROFILE_DIR', path.join(os.tmpdir(), 'legacy-gateway-profile')))
  mkdirSync(dir, { recursive: true })
  const system = systemsOption(['legacy-gateway'])[0] as SystemName
  const isFloor = system === 'floor' || system === 'floor-xml'
  if (system !== 'legacy-gateway' && system !== 'gateway-xml' && !isFloor) throw new Error(`--profile profiles legacy-gateway, gateway-xml, floor or floor-xml, not ${system}`)
  const sim = await startChild('simulator')
  const before = new Set(readdirSync(dir))
  const execArgv = ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=200']
  const gateway = isFloor
    ? await startChild('floor', { env: { LEGACY_URL: sim.rpcUrl as string }, execArgv })
    : await startChild('gateway', { env: gatewayEnv(sim), execArgv })
  let calls = 0
  try {
    const list = await loginUsers(system, users, 'prof', { sim, gateway: isFloor ? undefined : gateway, seed: undefined, floor: isFloor ? gateway : undefined })
    const w = await runLoad(list, warmupMs, undefined)
    const h = latencyHistogram()
    const r = await runLoad(list, durationMs, h)
    await Promise.all(list.map(u => u.close()))
    // Each user's first call was made at login (the check of the echoed value).
    calls = w.calls + r.calls + users
    log(`profiled: ${users} users, ${round(r.calls / r.seconds, 0)} calls/s, ${r.errors} errors`)
  } finally {
    await gateway.stop()
    await sim.stop()
  }
  const written = readdirSync(dir).filter(f => f.endsWith('.cpuprofile') && !before.has(f))
    .map(f => path.join(dir, f)).sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)
  const file = written[0]
  if (file === undefined) throw new Error(`no .cpuprofile appeared in ${dir}`)
  const summary = summarizeProfile(file)
  process.stdout.write(`${system} CPU profile under ${users}-user load: ${file}\n\n`)
  process.stdout.write(profileTable(summary, calls) + '\n')
  printResult('rpc-profile', { system, users, durationMs, file, calls, ...summary })
}

function logLevel (): string {
  return option('log-level', 'BENCH_LOG_LEVEL', 'warn')
}

function gatewayEnv (sim: Child): Record<string, string> {
  return {
    LEGACY_URL: sim.rpcUrl as string,
    LOG_LEVEL: logLevel(),
    LOGIN_RATE_LIMIT: '0',
    MAX_SESSIONS: '100000',
    COOKIE_SECURE: 'false'
  }
}

async function main (): Promise<void> {
  if (flag('profile', 'BENCH_PROFILE')) return await profile()

  const userCounts = listOption('users', 'BENCH_USERS', [1, 10, 50, 200])
  const durationMs = numberOption('duration', 'BENCH_DURATION', 5) * 1000
  const warmupMs = numberOption('warmup', 'BENCH_WARMUP', 1) * 1000
  const rounds = Math.max(1, Math.floor(numberOption('rounds', 'BENCH_ROUNDS', 1)))
  const SYSTEMS = systemsOption(ALL_SYSTEMS)
  const uses = (...names: SystemName[]): boolean => names.some(n => SYSTEMS.includes(n))

  const sim = await startChild('simulator')
  const legacyEnv = { LEGACY_URL: sim.rpcUrl as string }
  const gateway = uses('legacy-gateway', 'gateway-xml') ? await startChild('gateway', { env: gatewayEnv(sim) }) : undefined
  const seed = uses('seed-style') ? await startChild('seed-style', { env: legacyEnv }) : undefined
  const floor = uses('floor', 'floor-xml') ? await startChild('floor', { env: legacyEnv }) : undefined
  const targets: Targets = { sim, gateway, seed, floor }

  const histograms = new Map<string, RecordableHistogram>()
  const rates = new Map<string, number[]>()
  const totals = new Map<string, { calls: number, errors: number, cpu: CpuSample }>()
  const ZERO: CpuSample = { loadGenerator: 0, simulator: 0, systemUnderTest: 0, machine: 0, wall: 0 }
  try {
    // Every system's code is optimized by the JIT before anything is measured.
    for (const system of SYSTEMS) {
      const users = await loginUsers(system, 10, `${system}-jit`, targets)
      await runLoad(users, Math.max(2000, warmupMs), undefined)
      await Promise.all(users.map(u => u.close()))
    }
    for (let round = 0; round < rounds; round++) {
      for (const n of userCounts) {
        for (const system of SYSTEMS) {
          const key = `${system}/${n}`
          const users = await loginUsers(system, n, `${system}-r${round}-n${n}`, targets)
          await runLoad(users, warmupMs, undefined)
          const h = histograms.get(key) ?? latencyHistogram()
          histograms.set(key, h)
          const cpu0 = cpuNow(sim, sutOf(system, targets))
          const r = await runLoad(users, durationMs, h)
          const cpu1 = cpuNow(sim, sutOf(system, targets))
          await Promise.all(users.map(u => u.close()))
          rates.set(key, [...(rates.get(key) ?? []), r.calls / r.seconds])
          const t = totals.get(key) ?? { calls: 0, errors: 0, cpu: ZERO }
          totals.set(key, { calls: t.calls + r.calls, errors: t.errors + r.errors, cpu: cpuAdd(t.cpu, cpu0, cpu1) })
          log(`round ${round + 1}/${rounds} ${system} users=${n}: ${Math.round(r.calls / r.seconds)} calls/s` +
            (r.errors > 0 ? `, ${r.errors} errors (first: ${r.firstError ?? ''})` : ''))
        }
      }
    }
  } finally {
    await Promise.all([gateway?.stop(), seed?.stop(), floor?.stop()])
    await sim.stop()
  }

  const cells: Cell[] = []
  for (const n of userCounts) {
    for (const system of SYSTEMS) {
      const key = `${system}/${n}`
      const t = totals.get(key) ?? { calls: 0, errors: 0, cpu: ZERO }
      const ours = t.cpu.loadGenerator + t.cpu.simulator + t.cpu.systemUnderTest
      const perCall = (us: number): number => t.calls === 0 ? NaN : round(us / t.calls, 1)
      cells.push({
        system,
        users: n,
        callsPerSec: round(median(rates.get(key) ?? [0]), 0),
        calls: t.calls,
        errors: t.errors,
        latency: latencyOf(histograms.get(key) ?? latencyHistogram()),
        cpuPerCall: { loadGenerator: perCall(t.cpu.loadGenerator), simulator: perCall(t.cpu.simulator), systemUnderTest: perCall(t.cpu.systemUnderTest) },
        otherCpuPct: round(Math.max(0, t.cpu.machine - ours) / t.cpu.wall * 100, 0)
      })
    }
  }
  const cell = (system: SystemName, n: number): Cell | undefined => cells.find(c => c.system === system && c.users === n)
  /** a / b of two cells' figures; NaN when either system did not run. */
  const ratio = (a: Cell | undefined, b: Cell | undefined, of: (c: Cell) => number): number =>
    a === undefined || b === undefined ? NaN : round(of(a) / of(b))
  const calls = (c: Cell): number => c.callsPerSec
  const p99 = (c: Cell): number => c.latency.p99
  const cpu = (c: Cell): number => c.cpuPerCall.systemUnderTest
  const ratios = userCounts.map((n) => {
    const gw = cell('legacy-gateway', n)
    const direct = cell('direct', n)
    const floorCell = cell('floor', n)
    const seedStyle = cell('seed-style', n)
    // What the 2 cores must pay per call besides the system under test (load generator + simulator):
    // with it, the best calls/s any system in the middle could reach on this machine if it cost nothing.
    const others = gw === undefined ? NaN : gw.cpuPerCall.loadGenerator + gw.cpuPerCall.simulator
    return {
      users: n,
      gatewayVsDirect: ratio(gw, direct, calls),
      gatewayVsSeedStyle: ratio(gw, seedStyle, calls),
      p99GatewayVsDirect: ratio(gw, direct, p99),
      /** CPU per call of the gateway over the floor forwarder's: what the product costs beyond Node's floor. */
      cpuGatewayVsFloor: ratio(gw, floorCell, cpu),
      /** CPU per call of the gateway over seed-style's. */
      cpuGatewayVsSeedStyle: ratio(gw, seedStyle, cpu),
      /** CPU per call of seed-style over the gateway's: calls per CPU-second of the system under test. */
      cpuEfficiencyVsSeedStyle: ratio(seedStyle, gw, cpu),
      /** gateway/seed-style calls/s that a gateway costing 0 µs per call would reach here. */
      ceilingVsSeedStyle: seedStyle === undefined ? NaN : round((others + seedStyle.cpuPerCall.systemUnderTest) / others),
      floorVsDirect: ratio(floorCell, direct, calls),
      /** /api/xml/*: the same against its own floor and direct rows. */
      xmlGatewayVsDirect: ratio(cell('gateway-xml', n), cell('direct-xml', n), calls),
      xmlP99GatewayVsDirect: ratio(cell('gateway-xml', n), cell('direct-xml', n), p99),
      xmlCpuGatewayVsFloor: ratio(cell('gateway-xml', n), cell('floor-xml', n), cpu)
    }
  })

  process.stdout.write(`RPC echo, ${durationMs / 1000} s per cell after ${warmupMs / 1000} s warm-up, ${rounds} round(s) (calls/s: median of rounds; latency: all rounds); latency in ms;\n` +
    'CPU µs/call: CPU time per call of each process (/proc/<pid>/stat utime+stime over the measured window); other CPU %: what else the machine ran meanwhile (kernel, other tenants), % of one core\n\n')
  process.stdout.write(table(
    ['users', 'system', 'calls/s', 'p50', 'p99', 'max', 'errors', 'CPU µs/call: loadgen', 'simulator', 'system', 'other CPU %'],
    cells.map(c => [c.users, c.system, c.callsPerSec, c.latency.p50, c.latency.p99, c.latency.max, c.errors,
      c.cpuPerCall.loadGenerator, c.cpuPerCall.simulator, c.system.startsWith('direct') ? '-' : c.cpuPerCall.systemUnderTest, c.otherCpuPct])
  ) + '\n\n')
  process.stdout.write(table(
    ['users', 'gateway/floor CPU', 'gateway/seed-style CPU', 'gateway/direct calls/s', 'gateway/direct p99', 'floor/direct calls/s', 'gateway/seed-style calls/s', 'ceiling of gateway/seed-style'],
    ratios.map(r => [r.users, r.cpuGatewayVsFloor, r.cpuGatewayVsSeedStyle, r.gatewayVsDirect, r.p99GatewayVsDirect, r.floorVsDirect, r.gatewayVsSeedStyle, r.ceilingVsSeedStyle])
  ) + '\n\n')
  process.stdout.write(table(
    ['users', 'xml: gateway/floor CPU', 'xml: gateway/direct calls/s', 'xml: gateway/direct p99'],
    ratios.map(r => [r.users, r.xmlCpuGatewayVsFloor, r.xmlGatewayVsDirect, r.xmlP99GatewayVsDirect])
  ) + '\n\n')

  // The targets of issue 16 (docs/BENCHMARKS.md), at 50 users, from this one run.
  // Undefined (not measured) when a system of the ratio did not run (--systems).
  const held = (ratio: number, test: (r: number) => boolean): boolean | undefined => Number.isFinite(ratio) ? test(ratio) : undefined
  const at50 = ratios.find(r => r.users === 50)
  const targetsMet = at50 === undefined
    ? undefined
    : {
        gatewayCpuAtMost1_25xFloor: held(at50.cpuGatewayVsFloor, r => r <= 1.25),
        gatewayCpuAtMostHalfSeedStyle: held(at50.cpuGatewayVsSeedStyle, r => r <= 0.5),
        gatewayAtLeast0_75xDirect: held(at50.gatewayVsDirect, r => r >= 0.75),
        gatewayP99AtMost1_5xDirect: held(at50.p99GatewayVsDirect, r => r <= 1.5),
        xmlGatewayCpuAtMost1_4xFloor: held(at50.xmlCpuGatewayVsFloor, r => r <= 1.4)
      }
  if (targetsMet !== undefined) {
    process.stdout.write('targets at 50 users: ' + Object.entries(targetsMet).map(([k, v]) => `${k} ${v === undefined ? 'not measured' : v ? 'met' : 'MISSED'}`).join(', ') + '\n')
  }
  printResult('rpc', { durationMs, warmupMs, rounds, systems: SYSTEMS, gatewayLogLevel: logLevel(), cells, ratios, targetsMet })
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/rpc: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
