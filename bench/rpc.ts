// RPC path benchmark: N virtual users, each logged in and calling `echo` with a
// small struct serially as fast as it can, all at once, for a fixed time; three systems one after
// the other on the same simulator, in one run:
//
//   direct          each user on its own keep-alive socket straight to the simulator (the limit)
//   legacy-gateway  POST /api/rpc/echo with the session cookie
//   seed-style      the naive design (bench/peers/seed-style.ts)
//
// The simulator, the gateway and the seed-style peer each run in their own child process (so each
// has its own event loop and its CPU is its own); this process is the load generator.
//
//   node dist/bench/rpc.js [--users 1,10,50,200] [--duration 5] [--warmup 1] [--rounds 1]
//   node dist/bench/rpc.js --profile [--users 50] [--duration 10]    # gateway only, --cpu-prof
//
// Environment equivalents: BENCH_USERS, BENCH_DURATION (s), BENCH_WARMUP (s), BENCH_ROUNDS,
// BENCH_PROFILE=1, BENCH_PROFILE_DIR, BENCH_LOG_LEVEL (the gateway's LOG_LEVEL, default warn).
import { mkdirSync, readdirSync, statSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { RecordableHistogram } from 'node:perf_hooks'
import { directUser, gatewayUser, seedStyleUser, type SystemName, type VirtualUser } from './lib/clients.js'
import { startChild, type Child } from './lib/processes.js'
import { flag, machineBusyMicros, latencyHistogram, latencyOf, listOption, log, numberOption, option, pool, printResult, recordMs, round, table, type Latency } from './lib/common.js'
import { summarizeProfile, profileTable } from './lib/profile.js'

const SYSTEMS: SystemName[] = ['direct', 'legacy-gateway', 'seed-style']
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

async function loginUsers (system: SystemName, n: number, tag: string, targets: { sim: Child, gateway: Child | undefined, seed: Child | undefined }): Promise<VirtualUser[]> {
  const users: VirtualUser[] = new Array(n)
  await pool(n, 16, async (i) => {
    const name = `${tag}-${i}`
    if (system === 'direct') users[i] = await directUser(targets.sim.rpcUrl as string, name)
    else if (system === 'legacy-gateway') users[i] = await gatewayUser((targets.gateway as Child).url, name)
    else users[i] = await seedStyleUser((targets.seed as Child).url, name)
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
  const sim = await startChild('simulator')
  const before = new Set(readdirSync(dir))
  const gateway = await startChild('gateway', {
    env: gatewayEnv(sim),
    execArgv: ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=200']
  })
  try {
    const list = await loginUsers('legacy-gateway', users, 'prof', { sim, gateway, seed: undefined })
    await runLoad(list, warmupMs, undefined)
    const h = latencyHistogram()
    const r = await runLoad(list, durationMs, h)
    await Promise.all(list.map(u => u.close()))
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
  process.stdout.write(`gateway CPU profile under ${users}-user RPC load: ${file}\n\n`)
  process.stdout.write(profileTable(summary) + '\n')
  printResult('rpc-profile', { users, durationMs, file, ...summary })
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

  const sim = await startChild('simulator')
  const gateway = await startChild('gateway', { env: gatewayEnv(sim) })
  const seed = await startChild('seed-style', { env: { LEGACY_URL: sim.rpcUrl as string } })
  const targets = { sim, gateway, seed }

  const histograms = new Map<string, RecordableHistogram>()
  const rates = new Map<string, number[]>()
  const totals = new Map<string, { calls: number, errors: number, cpu: CpuSample }>()
  const ZERO: CpuSample = { loadGenerator: 0, simulator: 0, systemUnderTest: 0, machine: 0, wall: 0 }
  const sutOf = (system: SystemName): Child | undefined => system === 'legacy-gateway' ? gateway : system === 'seed-style' ? seed : undefined
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
          const cpu0 = cpuNow(sim, sutOf(system))
          const r = await runLoad(users, durationMs, h)
          const cpu1 = cpuNow(sim, sutOf(system))
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
    await Promise.all([gateway.stop(), seed.stop()])
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
  const cell = (system: SystemName, n: number): Cell => cells.find(c => c.system === system && c.users === n) as Cell
  const ratios = userCounts.map((n) => {
    const gw = cell('legacy-gateway', n)
    const direct = cell('direct', n)
    const seedStyle = cell('seed-style', n)
    // What the 2 cores must pay per call besides the system under test (load generator + simulator):
    // with it, the best calls/s any system in the middle could reach on this machine if it cost nothing.
    const others = gw.cpuPerCall.loadGenerator + gw.cpuPerCall.simulator
    return {
      users: n,
      gatewayVsDirect: round(gw.callsPerSec / direct.callsPerSec),
      gatewayVsSeedStyle: round(gw.callsPerSec / seedStyle.callsPerSec),
      p99GatewayVsDirect: round(gw.latency.p99 / direct.latency.p99),
      /** CPU per call of seed-style over the gateway's: calls per CPU-second of the system under test. */
      cpuEfficiencyVsSeedStyle: round(seedStyle.cpuPerCall.systemUnderTest / gw.cpuPerCall.systemUnderTest),
      /** gateway/seed-style calls/s that a gateway costing 0 µs per call would reach here. */
      ceilingVsSeedStyle: round((others + seedStyle.cpuPerCall.systemUnderTest) / others)
    }
  })

  process.stdout.write(`RPC echo, ${durationMs / 1000} s per cell after ${warmupMs / 1000} s warm-up, ${rounds} round(s) (calls/s: median of rounds; latency: all rounds); latency in ms;\n` +
    'CPU µs/call: CPU time per call of each process; other CPU %: what else the machine ran meanwhile (kernel, other tenants), % of one core\n\n')
  process.stdout.write(table(
    ['users', 'system', 'calls/s', 'p50', 'p99', 'max', 'errors', 'CPU µs/call: loadgen', 'simulator', 'system', 'other CPU %'],
    cells.map(c => [c.users, c.system, c.callsPerSec, c.latency.p50, c.latency.p99, c.latency.max, c.errors,
      c.cpuPerCall.loadGenerator, c.cpuPerCall.simulator, c.system === 'direct' ? '-' : c.cpuPerCall.systemUnderTest, c.otherCpuPct])
  ) + '\n\n')
  process.stdout.write(table(
    ['users', 'gateway/direct calls/s', 'gateway/seed-style calls/s', 'gateway/direct p99', 'seed-style/gateway CPU per call', 'ceiling of gateway/seed-style'],
    ratios.map(r => [r.users, r.gatewayVsDirect, r.gatewayVsSeedStyle, r.p99GatewayVsDirect, r.cpuEfficiencyVsSeedStyle, r.ceilingVsSeedStyle])
  ) + '\n\n')

  const at50 = ratios.find(r => r.users === 50)
  const targetsMet = at50 === undefined
    ? undefined
    : {
        gatewayAtLeast2xSeedStyle: at50.gatewayVsSeedStyle >= 2,
        gatewayAtLeastHalfDirect: at50.gatewayVsDirect >= 0.5,
        gatewayP99AtMost2xDirect: at50.p99GatewayVsDirect <= 2
      }
  if (targetsMet !== undefined) {
    process.stdout.write('targets at 50 users: ' + Object.entries(targetsMet).map(([k, v]) => `${k} ${v ? 'met' : 'MISSED'}`).join(', ') + '\n')
  }
  printResult('rpc', { durationMs, warmupMs, rounds, gatewayLogLevel: logLevel(), cells, ratios, targetsMet })
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/rpc: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
