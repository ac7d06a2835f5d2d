// Starting the systems under test (bench/lib/serve.ts) in child processes and talking to them.
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { readFileSync } from 'node:fs'
import { setTimeout as delay } from 'node:timers/promises'
import { freePort } from '../../test/free-port.js'
import type { FromChild, ToChild } from './probe.js'

const SERVE = fileURLToPath(new URL('./serve.js', import.meta.url))
const PROBE = new URL('./probe.js', import.meta.url).href
const SERVER = fileURLToPath(new URL('../../server.js', import.meta.url))

const CLK_TCK = 100 // getconf CLK_TCK on Linux

export type SystemKind = 'gateway' | 'seed-style' | 'floor' | 'simulator'

export interface Child {
  readonly kind: SystemKind
  readonly pid: number
  readonly url: string
  readonly rpcUrl: string | undefined
  readonly alarmUrl: string | undefined
  /** After two full collections in the child (it runs with --expose-gc). */
  memory (): Promise<NodeJS.MemoryUsage>
  /** The gateway only: writes a V8 heap snapshot to `path`. */
  heapSnapshot (path: string): Promise<string>
  /** RSS as the kernel counts it, from /proc (no IPC, no GC). */
  rssKiB (): number
  /** CPU time (user + system, all threads) used so far, from /proc, in microseconds. */
  cpuMicros (): number
  /** The simulator only: alarms at `rate`/s for `durationMs`, stamped with their send time. */
  sendAlarms (rate: number, durationMs: number): Promise<{ sent: number, datagrams: number }>
  /**
   * How far the child's `performance.timeOrigin + performance.now()` is ahead of ours (ms), and the
   * uncertainty of that figure (half the IPC round trip): the alarm latency crosses processes.
   */
  clockOffset (): Promise<{ offsetMs: number, uncertaintyMs: number }>
  stop (): Promise<void>
  /** SIGKILL, for a process whose graceful stop would only cost time (10,000 logouts). */
  kill (): Promise<void>
  /** The soft limit on open files the child runs with. */
  fdLimit (): number
}

export interface StartOptions {
  env?: Record<string, string>
  /** Extra node flags, e.g. --cpu-prof. */
  execArgv?: string[]
}

async function waitHealthy (url: string, exited: Promise<void>): Promise<void> {
  const state = { gone: false }
  exited.then(() => { state.gone = true }, () => {})
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline && !state.gone) {
    try {
      const res = await fetch(`${url}/healthz`)
      await res.arrayBuffer()
      if (res.status === 200) return
    } catch {
      // not listening yet
    }
    await delay(50)
  }
  throw new Error(state.gone ? 'the gateway exited before it was ready' : 'the gateway was not healthy within 30 s')
}

/**
 * `gateway`: `node dist/server.js` itself, as operators run it (configuration from the environment,
 * logging as server.ts sets it up), with probe.js preloaded for memory queries; its log goes to
 * this process's stderr. `seed-style`, `floor` and `simulator`: bench/lib/serve.js.
 */
export async function startChild (kind: SystemKind, opts: StartOptions = {}): Promise<Child> {
  const isGateway = kind === 'gateway'
  const port = isGateway ? await freePort() : 0
  const nodeArgs = [
    '--expose-gc', ...(isGateway ? ['--import', PROBE] : []), ...(opts.execArgv ?? []),
    isGateway ? SERVER : SERVE, ...(isGateway ? [] : [kind])
  ]
  // Through a shell only to lift the soft limit on open files to the hard one: 10,000 sessions are
  // 10,000 sockets in the gateway and as many in the simulator. The IPC channel survives the exec.
  const proc: ChildProcess = spawn('/bin/sh', ['-c', 'ulimit -Sn "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', process.execPath, ...nodeArgs], {
    env: { ...process.env, ...(isGateway ? { HOST: '127.0.0.1', PORT: String(port) } : {}), ...opts.env },
    // The children's stdout must not mix with the table and the JSON line on ours.
    stdio: ['ignore', 'pipe', 'inherit', 'ipc']
  })
  proc.stdout?.pipe(process.stderr)
  const waiters: Array<(m: FromChild) => boolean> = []
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  proc.on('message', (m: FromChild) => {
    const i = waiters.findIndex(w => w(m))
    if (i !== -1) waiters.splice(i, 1)
  })
  const next = <T extends FromChild['type']>(type: T, timeoutMs: number): Promise<Extract<FromChild, { type: T }>> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${kind}: no ${type} message within ${timeoutMs} ms`)), timeoutMs)
      waiters.push((m) => {
        if (m.type === 'error') {
          clearTimeout(timer)
          reject(new Error(`${kind}: ${m.message}`))
          return true
        }
        if (m.type !== type) return false
        clearTimeout(timer)
        resolve(m as Extract<FromChild, { type: T }>)
        return true
      })
    })
  const post = (m: ToChild): void => { proc.send(m) }

  let ready: { url: string, rpcUrl?: string, alarmUrl?: string }
  if (isGateway) {
    const url = `http://127.0.0.1:${port}`
    await waitHealthy(url, exited)
    ready = { url }
  } else {
    ready = await Promise.race([
      next('ready', 30_000),
      exited.then(() => { throw new Error(`${kind} exited before it was ready (code ${String(proc.exitCode)})`) })
    ])
  }
  const pid = proc.pid as number
  return {
    kind,
    pid,
    url: ready.url,
    rpcUrl: ready.rpcUrl,
    alarmUrl: ready.alarmUrl,
    async memory () {
      const reply = next('mem', 60_000)
      post({ type: 'mem' })
      return (await reply).usage
    },
    async heapSnapshot (path) {
      const reply = next('snapshot', 300_000)
      post({ type: 'snapshot', path })
      return (await reply).path
    },
    rssKiB () {
      const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      return Number(match?.[1] ?? NaN)
    },
    cpuMicros () {
      // Fields after the command name (which may hold spaces): utime is the 14th field, stime the 15th.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      return (Number(fields[11]) + Number(fields[12])) * 1_000_000 / CLK_TCK
    },
    async sendAlarms (rate, durationMs) {
      const reply = next('alarms-done', durationMs + 60_000)
      post({ type: 'alarms', rate, durationMs })
      const { sent, datagrams } = await reply
      return { sent, datagrams }
    },
    async clockOffset () {
      let best = { offsetMs: NaN, uncertaintyMs: Infinity }
      for (let i = 0; i < 20; i++) {
        const t0 = performance.timeOrigin + performance.now()
        const reply = next('clock', 5000)
        post({ type: 'clock' })
        const { now } = await reply
        const t1 = performance.timeOrigin + performance.now()
        if ((t1 - t0) / 2 < best.uncertaintyMs) best = { offsetMs: now - (t0 + t1) / 2, uncertaintyMs: (t1 - t0) / 2 }
      }
      return best
    },
    async stop () {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      // The gateway stops as in production (SIGTERM: drain, log out, exit 0), which is also what
      // makes --cpu-prof write its profile.
      if (isGateway) proc.kill('SIGTERM')
      else post({ type: 'stop' })
      const killer = setTimeout(() => proc.kill('SIGKILL'), 15_000)
      await exited
      clearTimeout(killer)
    },
    async kill () {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      proc.kill('SIGKILL')
      await exited
    },
    fdLimit () {
      const match = /^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))
      return Number(match?.[1] ?? NaN)
    }
  }
}
