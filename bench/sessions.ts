// Sessions benchmark: log in 1,000 and then 10,000 sessions and report the memory
// each idle pinned session costs the system under test (RSS and V8 heap growth per session, in KB)
// and the login rate, for legacy-gateway and for the seed-style peer, one after the other in one run.
//
// The system under test runs alone in a child process (the gateway as `node dist/server.js`), so its
// RSS is its own; the simulator runs in another, fresh for each system. Memory is read after two full
// collections in the child (--expose-gc). A warm-up of 100 sessions is logged in before the baseline
// (code, JIT, pools) and kept, so that no freed warm-up memory is reused by the measured sessions,
// and 20,000 echo calls grow V8's young generation to its working size in both systems.
//
//   node dist/bench/sessions.js [--sessions 1000,10000] [--concurrency 16]
//   node dist/bench/sessions.js --explain [--sessions 2000]   # gateway heap snapshots: what a session holds,
//                                                             # and the heap of one connection per transport
//   (BENCH_SESSIONS, BENCH_CONCURRENCY, BENCH_LOG_LEVEL, BENCH_EXPLAIN=1)
import { setTimeout as delay } from 'node:timers/promises'
import { rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import http from 'node:http'
import { Client, Pool } from 'undici'
import { PinnedUpstream } from '../lib/pinned-upstream.js'
import { encodeCall } from '../lib/xmlrpc.js'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { startChild, type Child } from './lib/processes.js'
import { flag, listOption, log, numberOption, option, printResult, round, table } from './lib/common.js'
import { heapGrowth, heapTable } from './lib/heap.js'
import { gatewayUser, seedStyleUser } from './lib/clients.js'

type System = 'legacy-gateway' | 'seed-style'
const SYSTEMS: System[] = ['legacy-gateway', 'seed-style']
const WARMUP = 100
// Echo calls made after the warm-up logins, before the baseline: a system that has served some
// traffic has grown V8's young generation to its working size (up to 32 MB), which would otherwise
// land in the first step's RSS of whichever system had not grown it yet.
const WARMUP_CALLS = 20_000
const KB = 1024

interface Memory { rss: number, heapUsed: number, heapTotal: number, external: number }
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
  return { rss: usage.rss, heapUsed: usage.heapUsed, heapTotal: usage.heapTotal, external: usage.external }
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
 * The floor under a session: the heap one idle, logged-in keep-alive connection costs with each
 * transport, measured in this process against the simulator (`n` of each, one login call on each,
 * then idle). `pinned-upstream` is what the gateway uses (an undici Pool of one connection with its
 * queue compacted); `undici Pool (stock)` is the same Pool with undici's 2,048-slot queue;
 * `http.Agent` is what seed-style keeps per user.
 */
async function transportFloor (rpcUrl: string, n: number): Promise<Array<{ transport: string, heapBytes: number }>> {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const url = new URL(rpcUrl)
  const loginBody = (i: number): string => encodeCall('login', [`f${i}`, `f${i}`])
  const upstreamOpts = { queueMax: 256, timeoutMs: 30_000, connectTimeoutMs: 10_000, maxResponseBytes: 1 << 24 }
  const cost = async (open: (i: number) => Promise<() => unknown>): Promise<number> => {
    // A first, unmeasured round compiles the code paths, which would otherwise count against the first transport.
    await warm(open)
    const closers: Array<() => unknown> = []
    gc()
    gc()
    const before = process.memoryUsage().heapUsed
    for (let i = 0; i < n; i += 50) {
      closers.push(...await Promise.all(Array.from({ length: Math.min(50, n - i) }, async (_, j) => await open(i + j))))
    }
    await delay(200)
    gc()
    gc()
    const bytes = (process.memoryUsage().heapUsed - before) / n
    await Promise.all(closers.map(async close => { await close() }))
    return Math.round(bytes)
  }
  const warm = async (open: (i: number) => Promise<() => unknown>): Promise<void> => {
    const closers = await Promise.all(Array.from({ length: 50 }, async (_, i) => await open(n + i)))
    await Promise.all(closers.map(async close => { await close() }))
  }
  const viaDispatcher = (make: () => Pool | Client) => async (i: number): Promise<() => unknown> => {
    const d = make()
    const res = await d.request({ method: 'POST', path: url.pathname, headers: { 'content-type': 'text/xml' }, body: loginBody(i) })
    await res.body.text()
    return async () => { await d.destroy() }
  }
  const longKeepAlive = { keepAliveTimeout: 2 ** 31 - 1, keepAliveMaxTimeout: 2 ** 31 - 1, pipelining: 1 }
  const rows: Array<{ transport: string, heapBytes: number }> = []
  rows.push({
    transport: 'pinned-upstream (gateway)',
    heapBytes: await cost(async (i) => {
      const up = new PinnedUpstream(rpcUrl, upstreamOpts)
      await up.request({ method: 'POST', path: url.pathname, headers: { 'content-type': 'text/xml' }, body: loginBody(i) })
      return async () => { await up.destroy() }
    })
  })
  rows.push({ transport: 'undici Pool (stock), 1 connection', heapBytes: await cost(viaDispatcher(() => new Pool(url.origin, { connections: 1, ...longKeepAlive }))) })
  rows.push({ transport: 'undici Client', heapBytes: await cost(viaDispatcher(() => new Client(url.origin, longKeepAlive))) })
  rows.push({
    transport: 'http.Agent (seed-style)',
    heapBytes: await cost(async (i) => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
      await new Promise<void>((resolve, reject) => {
        const req = http.request({ agent, host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'content-type': 'text/xml' } }, (res) => {
          res.resume()
          res.on('end', resolve)
        })
        req.on('error', reject)
        req.end(loginBody(i))
      })
      return () => { agent.destroy() }
    })
  })
  return rows
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
    const floor = await transportFloor(sim.rpcUrl as string, n)
    process.stdout.write(`The transport alone: heap per idle, logged-in keep-alive connection (${n} of each, in this process)\n\n` +
      table(['transport', 'heap B/connection'], floor.map(r => [r.transport, r.heapBytes])) + '\n\n')
    printResult('sessions-explain', { sessions: n, perSession: rows, transportFloor: floor })
  } finally {
    await pool.destroy()
    await gateway.kill()
    await sim.kill()
    for (const f of files) rmSync(f, { force: true })
  }
}

async function warmUp (system: System, url: string, users: number): Promise<void> {
  const all = await Promise.all(Array.from({ length: users }, async (_, i) =>
    system === 'legacy-gateway' ? await gatewayUser(url, `w${i}`) : await seedStyleUser(url, `w${i}`)))
  let left = WARMUP_CALLS
  await Promise.all(all.map(async u => { while (left-- > 0) await u.call() }))
  await Promise.all(all.map(async u => { await u.close() }))
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
    await warmUp(system, sut.url, concurrency)
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
        `${per(now.rss, base.rss)} KB RSS, ${per(now.heapUsed, base.heapUsed)} KB heap used, ${per(now.heapTotal, base.heapTotal)} KB heap committed per session`)
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
