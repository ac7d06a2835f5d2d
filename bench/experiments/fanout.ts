// An experiment behind docs/BENCHMARKS.md: what limits the alarm fan-out, and what coalescing writes
// buys. A bare `ws` server in a child process (no gateway: no UDP, no sessions) holds N WebSocket
// clients that live in this process, produces alarms at a rate, and sends each to every client
// with one of these strategies:
//
//   per-alarm       ws.send(frame) to every client for every alarm: one write (writev of header +
//                   payload) per client per alarm
//   coalesce-<W>    alarms are collected for up to W ms; each flush builds the WebSocket frames once
//                   (WebSocket.Sender.frame), concatenates them once, and writes that one buffer to
//                   every client's socket: one write per client per flush
//   coalesce-0      the same, flushed by setImmediate: nothing waits when alarms are rare, and the
//                   alarms that queued up while the previous fan-out ran go out together
//   hub             the gateway's engine (lib/alarm-hub.ts): batches of 10 ms / 64 alarms / 64 KiB,
//                   ws.send per client and alarm inside one cork of the client's socket per batch
//
//   node dist/bench/experiments/fanout.js [--clients 1000] [--rates 100,200,400] [--duration 5] [--windows 0,10,25]
import { fork } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type { AddressInfo, Socket } from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'
import WebSocket, { WebSocketServer } from 'ws'
import { AlarmHub } from '../../lib/alarm-hub.js'
import { latencyHistogram, latencyOf, listOption, log, numberOption, option, pool, printResult, recordMs, round, table, type Latency } from '../lib/common.js'

// ws exports Sender, but its type declarations do not.
const { Sender } = createRequire(import.meta.url)('ws') as { Sender: { frame: (data: Buffer, options: object) => Buffer[] } }

type Strategy = 'per-alarm' | `coalesce-${number}` | 'hub'

interface Run { type: 'run', strategy: Strategy, rate: number, durationMs: number }
interface Done { type: 'done', sent: number, cpuMicros: number, wallMs: number }

// ---- server (child process) ------------------------------------------------------------------------

async function server (): Promise<void> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()))
  const frameOptions = { fin: true, opcode: 1, mask: false, readOnly: true, rsv1: false }
  // The upgraded TCP socket of each client: the request's, which is the one ws writes to.
  const wires = new Map<WebSocket, Socket>()
  // Sessions do not exist here: one stand-in for all, held by nobody.
  const session = { ended: undefined }
  const hub = new AlarmHub<typeof session>({
    instance: 'fanout-experiment',
    replay: null,
    sessions: { hold () {}, release () {} },
    maxBufferedBytes: 64 * 1024 * 1024,
    pingMs: 3_600_000
  })
  // The hub's seq only moves on, over all runs.
  let hubSeq = 0
  wss.on('connection', (ws, req) => {
    wires.set(ws, req.socket)
    ws.on('close', () => wires.delete(ws))
    hub.add({ socket: ws, wire: req.socket, session })
  })

  process.on('message', (m: Run) => {
    if (m.type !== 'run') return
    const cpu0 = process.cpuUsage()
    const started = performance.now()
    const total = Math.round(m.rate * m.durationMs / 1000)
    let sent = 0
    let pending: Buffer[] = []
    let flushTimer: NodeJS.Timeout | undefined
    // 0: per alarm; -1: setImmediate; else a window in ms
    const window = m.strategy === 'per-alarm' || m.strategy === 'hub' ? 0 : Number(m.strategy.slice('coalesce-'.length))
    const windowMs = window === 0 && m.strategy !== 'per-alarm' ? -1 : window

    const flush = (): void => {
      flushTimer = undefined
      const frames = pending.flatMap(p => Sender.frame(p, frameOptions))
      pending = []
      const batch = Buffer.concat(frames)
      for (const wire of wires.values()) wire.write(batch)
    }
    const emit = (): void => {
      sent++
      const frame = Buffer.from(JSON.stringify({ type: 'alarm', seq: sent, alarm: { sentAt: (performance.timeOrigin + performance.now()).toFixed(3), message: '压力过高 pressure high', source: 'bench' } }))
      if (m.strategy === 'hub') {
        hub.publish({ seq: ++hubSeq, frame })
      } else if (windowMs === 0) {
        for (const ws of wires.keys()) ws.send(frame, { binary: false })
      } else {
        pending.push(frame)
        if (windowMs < 0) {
          if (pending.length === 1) setImmediate(flush)
        } else {
          flushTimer ??= setTimeout(flush, windowMs)
        }
      }
    }
    const tick = (): void => {
      const due = Math.min(total, Math.floor((performance.now() - started) * m.rate / 1000) + 1)
      for (let k = sent; k < due; k++) emit()
      if (sent < total) {
        setTimeout(tick, 1)
        return
      }
      if (flushTimer !== undefined) {
        clearTimeout(flushTimer)
        flush()
      }
      const cpu = process.cpuUsage(cpu0)
      process.send?.({ type: 'done', sent, cpuMicros: cpu.user + cpu.system, wallMs: performance.now() - started } satisfies Done)
    }
    tick()
  })
  process.on('disconnect', () => process.exit(0))
  process.send?.({ type: 'ready', port: (wss.address() as AddressInfo).port })
}

// ---- clients and driver (this process) ---------------------------------------------------------------

const SEQ = Buffer.from('"seq":')
const SENT_AT = Buffer.from('"sentAt":"')

interface Cell { strategy: Strategy, clients: number, rate: number, latency: Latency, received: number, expected: number, serverCpuPct: number, clientCpuPct: number }

async function main (): Promise<void> {
  if (process.argv[2] === 'server') return await server()
  const n = listOption('clients', 'BENCH_CLIENTS', [1000])[0] as number
  const rates = listOption('rates', 'BENCH_RATES', [100, 200, 400])
  const windows = option('windows', 'BENCH_WINDOWS', '0,10,25').split(',').map(Number)
  const durationMs = numberOption('duration', 'BENCH_DURATION', 5) * 1000
  const strategies: Strategy[] = ['per-alarm', ...windows.map(w => `coalesce-${w}` as const), 'hub']

  const child = fork(fileURLToPath(import.meta.url), ['server'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const port = await new Promise<number>((resolve) => child.once('message', (m: { port: number }) => resolve(m.port)))
  let h = latencyHistogram()
  let received = 0
  const clients: WebSocket[] = new Array(n)
  await pool(n, 50, async (i) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false })
    ws.on('message', (data: Buffer) => {
      const t = data.indexOf(SENT_AT)
      if (t === -1 || data.indexOf(SEQ) === -1) return
      const sentAt = Number(data.toString('latin1', t + SENT_AT.length, data.indexOf(34, t + SENT_AT.length)))
      recordMs(h, performance.timeOrigin + performance.now() - sentAt)
      received++
    })
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
    clients[i] = ws
  })
  log(`${n} clients connected`)

  const cells: Cell[] = []
  try {
    for (const rate of rates) {
      for (const strategy of strategies) {
        h = latencyHistogram()
        received = 0
        const own0 = process.cpuUsage()
        const done = new Promise<Done>((resolve) => {
          const on = (m: Done): void => { if (m.type === 'done') { child.off('message', on); resolve(m) } }
          child.on('message', on)
        })
        child.send({ type: 'run', strategy, rate, durationMs } satisfies Run)
        const d = await done
        const expected = d.sent * n
        const deadline = performance.now() + 5000
        while (performance.now() < deadline) {
          if (received >= expected) break
          await delay(20)
        }
        const own = process.cpuUsage(own0)
        const wall = d.wallMs / 1000
        const cell: Cell = {
          strategy,
          clients: n,
          rate,
          latency: latencyOf(h),
          received,
          expected,
          serverCpuPct: round(d.cpuMicros / 1e6 / wall * 100, 0),
          clientCpuPct: round((own.user + own.system) / 1e6 / wall * 100, 0)
        }
        cells.push(cell)
        log(`${strategy} ${rate}/s: p50 ${cell.latency.p50} ms p99 ${cell.latency.p99} ms, received ${received}/${expected}, CPU server ${cell.serverCpuPct}% clients ${cell.clientCpuPct}%`)
        await delay(500)
      }
    }
  } finally {
    for (const ws of clients) ws.terminate()
    child.disconnect()
  }
  process.stdout.write(`Fan-out experiment: bare ws server, ${n} clients, ${durationMs / 1000} s per cell; latency ms; CPU % of one core (server: its main thread's process)\n\n`)
  process.stdout.write(table(['strategy', 'alarms/s', 'deliveries/s', 'p50', 'p99', 'max', 'received/expected', 'CPU server', 'CPU clients'],
    cells.map(c => [c.strategy, c.rate, c.rate * c.clients, c.latency.p50, c.latency.p99, c.latency.max, `${c.received}/${c.expected}`, c.serverCpuPct, c.clientCpuPct])) + '\n')
  printResult('fanout-experiment', { clients: n, durationMs, cells })
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/experiments/fanout: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
