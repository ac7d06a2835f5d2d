// Preloaded into the gateway under test (`node --expose-gc --import probe.js dist/server.js`) by
// bench/lib/processes.ts, so that the benchmarks measure the gateway exactly as operators run it
// and can still ask it, over the IPC channel, for its memory after a full collection. Without an
// IPC channel it does nothing.

import { writeHeapSnapshot } from 'node:v8'

export type ToChild =
  | { type: 'mem' }
  | { type: 'snapshot', path: string }
  | { type: 'stop' }
  | { type: 'alarms', rate: number, durationMs: number }
  | { type: 'clock' }

export type FromChild =
  | { type: 'ready', url: string, rpcUrl?: string, alarmUrl?: string }
  | { type: 'mem', usage: NodeJS.MemoryUsage }
  | { type: 'snapshot', path: string }
  | { type: 'alarms-done', sent: number, datagrams: number }
  | { type: 'clock', now: number }
  | { type: 'error', message: string }

export function memoryAfterGc (): NodeJS.MemoryUsage {
  const gc = (globalThis as { gc?: (options?: { type: 'major', execution: 'sync', flavor: 'last-resort' }) => void }).gc
  // Twice: the first full collection can leave garbage that only a second one frees (weak refs).
  // Last-resort on Node 22+ (V8 12+), where an ordinary one keeps the freed pages pooled, in RSS;
  // Node 20's V8 takes the options object as a request for a collection later, not now.
  for (let i = 0; i < 2; i++) {
    if (Number(process.versions.v8.split('.')[0]) >= 12) gc?.({ type: 'major', execution: 'sync', flavor: 'last-resort' })
    else gc?.()
  }
  return process.memoryUsage()
}

function install (): void {
  if (process.send === undefined) return
  process.on('message', (message: ToChild) => {
    if (message.type === 'mem') process.send?.({ type: 'mem', usage: memoryAfterGc() } satisfies FromChild)
    if (message.type === 'snapshot') process.send?.({ type: 'snapshot', path: writeHeapSnapshot(message.path) } satisfies FromChild)
  })
  // The channel must not keep the gateway alive, and a vanished parent means a graceful stop.
  process.channel?.unref()
  process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'))
}

// Only as a preload: serve.ts imports the helpers above without installing anything twice.
if (process.argv[1]?.endsWith('/server.js') === true) install()
