import { STATUS_CODES } from 'node:http'
import { performance } from 'node:perf_hooks'
import { CONTRACT_CODES } from '../../lib/errors.js'

/**
 * Every invariant the chaos run checks. Violations are recorded as they happen (with the time
 * since the start and a few examples) and each invariant becomes one tap assertion at the end,
 * so one run reports every broken invariant, not just the first.
 */
export const INVARIANTS = {
  'affinity/own-user': 'every whoami answer names its own user and its session\'s socket',
  'affinity/one-user-per-socket': 'in the simulator\'s ledger, no socket carried two users',
  'affinity/no-anonymous-call': 'no call reached the legacy side on a socket that was not logged in (no silent reconnect)',
  'affinity/session-socket': 'every ledger entry on a session\'s socket carries that session\'s user',
  'affinity/no-200-after-loss': 'no call started after its session\'s socket died (or after SESSION_LOST/UPSTREAM_TIMEOUT) answered 200',
  'affinity/answer-matches-call': 'every 200 answers the call that was made (echo, sleep, XML document)',
  'sessions/explained-loss': 'a session is lost only when its socket was killed, the legacy server stopped, or a fault closed it',
  'contract/shape': 'every error is {statusCode, code, error, message} with a contract code and its status',
  'contract/no-500': 'no answer is a 5xx outside the contract (500 INTERNAL_ERROR)',
  'contract/expected': 'every answer is one this route can give under these faults',
  'contract/latency': 'no call takes longer than LEGACY_TIMEOUT_MS x (calls that may be ahead of it on its session + 1) + margin',
  'contract/no-error-log': 'the gateway logged nothing at error level (no unhandled error, even for aborted calls)',
  'alarms/sim-to-gateway': 'the gateway numbered every datagram from the alarm server, in order, once (dropped ones counted, never numbered)',
  'alarms/ws-order': 'each WebSocket got hello first, then alarms with consecutive seq from since+1 (or the gap\'s end), each exactly as published',
  'alarms/ws-gap': 'a gap frame appears only when the buffer overflowed, and names exactly the missing range',
  'alarms/ws-drained': 'a reading client received every alarm published before it closed or its session ended',
  'alarms/ws-not-cut': 'a client that never stopped reading was never cut off or terminated',
  'alarms/ws-dead-peer': 'a peer silent for more than two ping intervals is closed (ping/pong)',
  'alarms/ws-upgrade': 'every refused WebSocket upgrade is 401/403 with a contract body',
  'bad-clients/answers': 'forged cookies, wrong content types, oversized and broken bodies get their contract code',
  'slowloris/bounded': 'half-open connections are closed by the server within its header/request timeouts',
  'health/served': '/healthz kept answering within the margin while everything else went on'
} as const

export type Invariant = keyof typeof INVARIANTS

export class Findings {
  private readonly found = new Map<Invariant, { count: number, examples: unknown[] }>()
  private readonly startedAt = performance.now()
  constructor (private readonly log: (line: string) => void) {}

  fail (invariant: Invariant, detail: Record<string, unknown>): void {
    let entry = this.found.get(invariant)
    if (entry === undefined) {
      entry = { count: 0, examples: [] }
      this.found.set(invariant, entry)
    }
    entry.count++
    const example = { atMs: Math.round(performance.now() - this.startedAt), ...detail }
    if (entry.examples.length < 5) {
      entry.examples.push(example)
      this.log(`VIOLATION ${invariant}: ${JSON.stringify(example)}`)
    }
  }

  count (invariant: Invariant): number {
    return this.found.get(invariant)?.count ?? 0
  }

  examples (invariant: Invariant): unknown[] {
    return this.found.get(invariant)?.examples ?? []
  }
}

/** Counts by key, printed sorted at the end. */
export class Tally {
  private readonly counts = new Map<string, number>()

  inc (key: string, n = 1): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + n)
  }

  get (key: string): number {
    return this.counts.get(key) ?? 0
  }

  total (): number {
    let n = 0
    for (const v of this.counts.values()) n += v
    return n
  }

  lines (): string[] {
    return [...this.counts.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}: ${v}`)
  }
}

/** CONTRACT §3: the status each code travels with. */
export const STATUS_OF: Readonly<Record<string, number>> = {
  BAD_REQUEST: 400,
  UNAUTHENTICATED: 401,
  SESSION_LOST: 401,
  LOGIN_FAILED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RPC_FAULT: 422,
  SESSION_BUSY: 429,
  RATE_LIMITED: 429,
  BAD_UPSTREAM_RESPONSE: 502,
  UPSTREAM_UNAVAILABLE: 503,
  TOO_MANY_SESSIONS: 503,
  SHUTTING_DOWN: 503,
  DRAINING: 503,
  UPSTREAM_TIMEOUT: 504
}

/**
 * Why an error answer is outside the contract's shape, or undefined when it is inside.
 * `json` is the parsed body (undefined when it did not parse).
 */
export function shapeProblem (status: number, contentType: string | null, json: unknown): string | undefined {
  if (contentType === null || !contentType.startsWith('application/json')) return `content-type ${String(contentType)}`
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return 'body is not a JSON object'
  const body = json as Record<string, unknown>
  const keys = Object.keys(body).sort().join(',')
  const expectedKeys = body.code === 'RPC_FAULT' ? 'code,error,faultCode,message,statusCode' : 'code,error,message,statusCode'
  if (keys !== expectedKeys) return `keys ${keys}`
  if (body.statusCode !== status) return `statusCode ${String(body.statusCode)} on an HTTP ${status}`
  if (typeof body.code !== 'string' || !CONTRACT_CODES.has(body.code)) return `code ${String(body.code)} is not a contract code`
  if (STATUS_OF[body.code] !== status) return `${body.code} with status ${status}`
  if (body.error !== STATUS_CODES[status]) return `error ${String(body.error)}`
  if (typeof body.message !== 'string' || body.message === '') return 'empty message'
  return undefined
}
