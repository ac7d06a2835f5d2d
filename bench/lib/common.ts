// What every benchmark shares: options from argv or the environment, latency histograms, the
// machine description, a plain-text table and the machine-readable last line.
import os from 'node:os'
import { readFileSync } from 'node:fs'
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks'
import { parseArgs, type ParseArgsConfig } from 'node:util'

// Every knob of every benchmark, for node:util's strict parseArgs: a misspelled or unknown option
// is an error, never silently the default. One table, because bench/run.ts hands the same
// arguments to each benchmark (each reads the ones it uses).
const OPTIONS = {
  clients: { type: 'string' },
  concurrency: { type: 'string' },
  duration: { type: 'string' },
  explain: { type: 'boolean' },
  'gateway-flags': { type: 'string' },
  'log-level': { type: 'string' },
  only: { type: 'string' },
  profile: { type: 'boolean' },
  'profile-dir': { type: 'string' },
  rates: { type: 'string' },
  rounds: { type: 'string' },
  sessions: { type: 'string' },
  systems: { type: 'string' },
  users: { type: 'string' },
  warmup: { type: 'string' },
  windows: { type: 'string' },
  bus: { type: 'string' }
} as const satisfies NonNullable<ParseArgsConfig['options']>

export type OptionName = keyof typeof OPTIONS

let parsed: Partial<Record<OptionName, string | boolean>> | undefined

/** The benchmark's own arguments, parsed once; positionals (a child's role, a file) are allowed. */
function args (): Partial<Record<OptionName, string | boolean>> {
  parsed ??= parseArgs({ args: process.argv.slice(2), options: OPTIONS, strict: true, allowPositionals: true }).values
  return parsed
}

/** `--name value` or `--name=value` on the command line, else the environment variable, else the default. */
export function option (name: OptionName, envName: string, fallback: string): string {
  const value = args()[name]
  if (value !== undefined) return String(value)
  const env = process.env[envName]
  return env === undefined || env === '' ? fallback : env
}

export function numberOption (name: OptionName, envName: string, fallback: number): number {
  const raw = option(name, envName, String(fallback))
  const value = Number(raw)
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} (${envName}) must be a non-negative number, got ${JSON.stringify(raw)}`)
  return value
}

export function listOption (name: OptionName, envName: string, fallback: number[]): number[] {
  const raw = option(name, envName, fallback.join(','))
  const values = raw.split(',').map(s => Number(s.trim()))
  if (values.length === 0 || values.some(v => !Number.isInteger(v) || v <= 0)) {
    throw new Error(`--${name} (${envName}) must be a comma-separated list of positive integers, got ${JSON.stringify(raw)}`)
  }
  return values
}

export function flag (name: OptionName, envName: string): boolean {
  const raw = option(name, envName, 'false')
  return raw === 'true' || raw === '1' || raw === 'yes'
}

export interface Machine {
  nproc: number
  cpu: string
  node: string
  platform: string
  memGiB: number
  loadavg: number[]
}

export function machine (): Machine {
  let cpu = os.cpus()[0]?.model ?? 'unknown'
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))
    if (match?.[1] !== undefined) cpu = match[1].trim()
  } catch {
    // not Linux: os.cpus() has it
  }
  return {
    nproc: os.availableParallelism(),
    cpu,
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    loadavg: os.loadavg().map(l => Math.round(l * 100) / 100)
  }
}

/** Latencies in microseconds; HDR histogram with 3 significant digits, 1 µs to 10 min. */
export function latencyHistogram (): RecordableHistogram {
  return createHistogram({ lowest: 1, highest: 600_000_000, figures: 3 })
}

export function recordMs (h: RecordableHistogram, ms: number): void {
  h.record(Math.max(1, Math.round(ms * 1000)))
}

export interface Latency { p50: number, p99: number, max: number }

/** Milliseconds, 2 decimals. */
export function latencyOf (h: RecordableHistogram): Latency {
  if (h.count === 0) return { p50: NaN, p99: NaN, max: NaN }
  return { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max) }
}

function ms (us: number): number {
  return Math.round(us / 10) / 100
}

export function round (n: number, digits = 2): number {
  if (!Number.isFinite(n)) return n
  const f = 10 ** digits
  return Math.round(n * f) / f
}

/** A plain table: one header row, right-aligned numbers, left-aligned text. */
export function table (headers: string[], rows: Array<Array<string | number>>): string {
  const cells = [headers, ...rows.map(r => r.map(c => typeof c === 'number' ? formatNumber(c) : c))]
  const widths = headers.map((_, i) => Math.max(...cells.map(r => String(r[i] ?? '').length)))
  const numeric = headers.map((_, i) => rows.every(r => typeof r[i] === 'number'))
  const line = (r: Array<string | number>): string =>
    r.map((c, i) => numeric[i] === true ? String(c).padStart(widths[i] ?? 0) : String(c).padEnd(widths[i] ?? 0)).join('  ').trimEnd()
  return [line(cells[0] as string[]), widths.map(w => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n')
}

function formatNumber (n: number): string {
  if (!Number.isFinite(n)) return '-'
  if (Number.isInteger(n)) return String(n)
  return Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2)
}

/** The last line of every benchmark: one JSON object, for scripts and for docs/BENCHMARKS.md. */
export function printResult (bench: string, result: object): void {
  process.stdout.write(JSON.stringify({ bench, at: new Date().toISOString(), machine: machine(), ...result }) + '\n')
}

export function log (message: string): void {
  process.stderr.write(message + '\n')
}

/** Runs `task` at most `concurrency` at a time over 0..n-1. */
export async function pool (n: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++
      await task(i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker))
}

/** Extra node flags for the gateway under test (--gateway-flags "--trace-gc", BENCH_GATEWAY_FLAGS). */
export function gatewayFlags (): string[] {
  return option('gateway-flags', 'BENCH_GATEWAY_FLAGS', '').split(' ').filter(f => f !== '')
}

/**
 * CPU time the whole machine has spent busy so far (all cores; user, nice, system, irq, softirq,
 * steal), from /proc/stat, in microseconds. Minus what the measured processes used, it tells how much
 * else ran during a cell: other tenants of a shared machine, and the kernel's loopback work.
 */
export function machineBusyMicros (): number {
  try {
    const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number)
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields
    return (user + nice + system + irq + softirq + steal) * 10_000 // USER_HZ is 100
  } catch {
    return NaN
  }
}
