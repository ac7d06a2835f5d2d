// Sessions benchmark (issue 8, item 2): log in 1,000 and then 10,000 sessions and report the memory
// each idle pinned session costs the system under test (RSS and V8 heap growth per session, in KB)
// and the login rate, for legacy-gateway and for the seed-style peer, one after the other in one run.
//
// The system under test runs alone in a child process (the gateway as `node dist/server.js`), so its
// RSS is its own; the simulator runs in another, fresh for each system. Memory is read after two full
// collections in the child (--expose-gc). A warm-up of 100 sessions is logged in before the baseline
// (code, JIT, pools) and kept, so that no freed warm-up memory is reused by the measured sessions.
//
//   node dist/bench/sessions.js [--sessions 1000,10000] [--concurrency 16]
//   node dist/bench/sessions.js --explain [--sessions 2000]   # gateway heap snapshots: what a session holds
//   (BENCH_SESSIONS, BENCH_CONCURRENCY, BENCH_LOG_LEVEL, BENCH_EXPLAIN=1)
import { setTimeout as delay } from 'node:timers/promises'
import { rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Client, Pool } from 'undici'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { startChild, type Child } from './lib/processes.js'
import { flag, listOption, log, numberOption, option, printResult, round, table } from './lib/common.js'
import { heapGrowth, heapTable } from './lib/heap.js'

type System = 'legacy-gateway' | 'seed-style'
const SYSTEMS: System[] = ['legacy-gateway', 'seed-style']
const WARMUP = 100
const KB = 1024

interface Memory { rss: number, heapUsed: number, external: number }
interface Step {
  system: System
  sessions: number
  loginsPerSec: number
  rssKBPerSession: number
  heapKBPerSession: number
  externalKBPerSession: number
  rssMB: number
}

function memoryOf (usage: NodeJS.MemoryUsage): Memory {
  // external includes arrayBuffers (undici's llhttp runs in WebAssembly memory, an ArrayBuffer).
  return { rss: usage.rss, heapUsed: usage.heapUsed, external: usage.external }
}

async function loginMany (pool: Pool, system: System, from: number, to: number, concurrency: number): Promise<number> {
  let next = from
  const started = performance.now()
  const worker = async (): Promise<void> => {
    while (next < to) {
      const i = next++
      const name = `s${i}`
      const res = await pool.request({
        method: 'POST',
        path: '/api/login',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: name, password: name })
      })
      const text = await res.body.text()
      if (res.statusCode !== 200) throw new Error(`${system}: login ${name} answered ${res.statusCode} ${text}`)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return (to - from) / ((performance.now() - started) / 1000)
}

function gatewayEnv (sim: Child, maxSessions: number): Record<string, string> {
  return { LEGACY_URL: sim.rpcUrl as string, LOG_LEVEL: option('log-level', 'BENCH_LOG_LEVEL', 'warn'), LOGIN_RATE_LIMIT: '0', MAX_SESSIONS: String(maxSessions), COOKIE_SECURE: 'false' }
}

/**
 * Heap of an (unconnected) undici Pool limited to one connection, against a Client: what
 * lib/pinned-upstream.ts pays per session for using a Pool.
 */
function poolVersusClient (): { poolBytes: number, clientBytes: number } {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const cost = (make: () => unknown): number => {
    const keep: unknown[] = []
    gc()
    const before = process.memoryUsage().heapUsed
    for (let i = 0; i < 2000; i++) keep.push(make())
    gc()
    const bytes = (process.memoryUsage().heapUsed - before) / keep.length
    for (const k of keep) (k as Client).destroy().catch(() => {})
    return Math.round(bytes)
  }
  return {
    poolBytes: cost(() => new Pool('http://127.0.0.1:9', { connections: 1, pipelining: 1 })),
    clientBytes: cost(() => new Client('http://127.0.0.1:9', { pipelining: 1 }))
  }
}

/** Heap snapshots of the gateway before and after `n` more sessions: what one session holds. */
async function explain (n: number, concurrency: number): Promise<void> {
  const sim = await startChild('simulator')
  const gateway = await startChild('gateway', { env: gatewayEnv(sim, n + WARMUP + 1000) })
  const dir = os.tmpdir()
  const files = [path.join(dir, `lg-sessions-${process.pid}-a.heapsnapshot`), path.join(dir, `lg-sessions-${process.pid}-b.heapsnapshot`)]
  const pool = new Pool(gateway.url, { connections: concurrency, pipelining: 1 })
  try {
    await loginMany(pool, 'legacy-gateway', 0, WARMUP, concurrency)
    await delay(500)
    await gateway.memory()
    await gateway.heapSnapshot(files[0] as string)
    await loginMany(pool, 'legacy-gateway', WARMUP, WARMUP + n, concurrency)
    await delay(1000)
    await gateway.memory()
    await gateway.heapSnapshot(files[1] as string)
    const rows = heapGrowth(files[0] as string, files[1] as string, n)
    process.stdout.write(`legacy-gateway: V8 heap growth per idle session (snapshots before and after ${n} logins)\n\n${heapTable(rows)}\n\n`)
    const undici = poolVersusClient()
    process.stdout.write(`undici, heap per instance (not connected): Pool { connections: 1 } ${undici.poolBytes} B, Client ${undici.clientBytes} B\n`)
    printResult('sessions-explain', { sessions: n, perSession: rows, undici })
  } finally {
    await pool.destroy()
    await gateway.kill()
    await sim.kill()
    for (const f of files) rmSync(f, { force: true })
  }
}

async function measureSystem (system: System, steps: number[], concurrency: number): Promise<Step[]> {
  const most = Math.max(...steps) + WARMUP
  const sim = await startChild('simulator')
  let sut: Child | undefined
  const pools: Pool[] = []
  try {
    const env: Record<string, string> = system === 'legacy-gateway' ? gatewayEnv(sim, most + 1000) : { LEGACY_URL: sim.rpcUrl as string }
    sut = await startChild(system === 'legacy-gateway' ? 'gateway' : 'seed-style', { env })
    const needed = most + 200
    for (const child of [sim, sut]) {
      if (child.fdLimit() < needed) throw new Error(`${child.kind} may open only ${child.fdLimit()} files, ${needed} are needed: raise the hard limit (ulimit -Hn)`)
    }
    const pool = new Pool(sut.url, { connections: concurrency, pipelining: 1 })
    pools.push(pool)

    await loginMany(pool, system, 0, WARMUP, concurrency)
    await delay(500)
    const base = memoryOf(await sut.memory())
    const result: Step[] = []
    let done = 0
    for (const n of [...steps].sort((a, b) => a - b)) {
      const rate = await loginMany(pool, system, WARMUP + done, WARMUP + n, concurrency)
      const added = n - done
      done = n
      await delay(1000) // sockets settle, timers run, nothing in flight
      const now = memoryOf(await sut.memory())
      const per = (a: number, b: number): number => round((a - b) / n / KB, 2)
      result.push({
        system,
        sessions: n,
        loginsPerSec: round(rate, 0),
        rssKBPerSession: per(now.rss, base.rss),
        heapKBPerSession: per(now.heapUsed, base.heapUsed),
        externalKBPerSession: per(now.external, base.external),
        rssMB: round(now.rss / KB / KB, 1)
      })
      log(`${system}: ${n} sessions (+${added} at ${Math.round(rate)} logins/s), RSS ${round(now.rss / KB / KB, 1)} MB, ` +
        `${per(now.rss, base.rss)} KB RSS and ${per(now.heapUsed, base.heapUsed)} KB heap per session`)
    }
    return result
  } finally {
    await Promise.all(pools.map(p => p.destroy()))
    // 10,000 logouts at shutdown would only cost time here.
    await sut?.kill()
    await sim.kill()
  }
}

async function main (): Promise<void> {
  const concurrency = Math.max(1, Math.floor(numberOption('concurrency', 'BENCH_CONCURRENCY', 16)))
  if (flag('explain', 'BENCH_EXPLAIN')) return await explain(listOption('sessions', 'BENCH_SESSIONS', [2000])[0] as number, concurrency)
  const steps = listOption('sessions', 'BENCH_SESSIONS', [1000, 10000])
  const rows: Step[] = []
  for (const system of SYSTEMS) rows.push(...await measureSystem(system, steps, concurrency))

  const rowOf = (system: System, n: number): Step => rows.find(r => r.system === system && r.sessions === n) as Step
  const ratios = steps.map(n => ({
    sessions: n,
    rssGatewayVsSeedStyle: round(rowOf('legacy-gateway', n).rssKBPerSession / rowOf('seed-style', n).rssKBPerSession),
    loginRateGatewayVsSeedStyle: round(rowOf('legacy-gateway', n).loginsPerSec / rowOf('seed-style', n).loginsPerSec)
  }))

  process.stdout.write(`Idle pinned sessions: growth over a baseline of ${WARMUP} warm-up sessions, after full GC; logins ${concurrency} at a time\n\n`)
  process.stdout.write(table(
    ['sessions', 'system', 'logins/s', 'RSS KB/session', 'heap KB/session', 'external KB/session', 'RSS MB'],
    rows.map(r => [r.sessions, r.system, r.loginsPerSec, r.rssKBPerSession, r.heapKBPerSession, r.externalKBPerSession, r.rssMB])
  ) + '\n\n')
  process.stdout.write(table(
    ['sessions', 'gateway/seed-style RSS per session', 'gateway/seed-style login rate'],
    ratios.map(r => [r.sessions, r.rssGatewayVsSeedStyle, r.loginRateGatewayVsSeedStyle])
  ) + '\n\n')
  const at = Math.max(...steps)
  const gw = rowOf('legacy-gateway', at)
  const seed = rowOf('seed-style', at)
  const targetsMet = {
    rssAtMost16KBPerSession: gw.rssKBPerSession <= 16,
    rssNoMoreThanSeedStyle: gw.rssKBPerSession <= seed.rssKBPerSession
  }
  process.stdout.write(`targets at ${at} sessions: ` + Object.entries(targetsMet).map(([k, v]) => `${k} ${v ? 'met' : 'MISSED'}`).join(', ') + '\n')
  printResult('sessions', { warmupSessions: WARMUP, concurrency, rows, ratios, targetsMet })
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/sessions: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
