import { performance } from 'node:perf_hooks'
import type { FastifyInstance } from 'fastify'
import { fetch, type Agent } from 'undici'
import type { Simulator } from '../../sim/legacy.js'
import type { AlarmFeed } from '../../lib/alarm-feed.js'
import { type Findings, type Invariant, type Tally, shapeProblem } from './invariants.js'

/** What every actor of the chaos run shares. */
export interface ChaosContext {
  readonly url: string
  readonly app: FastifyInstance
  readonly sim: Simulator
  readonly feed: AlarmFeed
  /** Every browser request goes through this agent, closed at the end (so its sockets are counted). */
  agent: Agent
  readonly findings: Findings
  /** Answers by route and outcome. */
  readonly calls: Tally
  /** Faults injected, by kind. */
  readonly faults: Tally
  /** Alarms and WebSocket events. */
  readonly alarms: Tally
  /** Slowest answer per route, and how close any answer came to its bound. */
  readonly latency: Map<string, { maxMs: number, maxShareOfBound: number }>
  readonly timeoutMs: number
  readonly connectTimeoutMs: number
  /** Added to every latency bound: scheduling on two shared cores, GC. */
  readonly marginMs: number
  readonly queueMax: number
  readonly alarmBuffer: number
  readonly wsPingMs: number
  readonly log: (line: string) => void
}

export const now = (): number => performance.now()

export interface Answer {
  status: number
  contentType: string | null
  text: string
  json: unknown
  setCookie: string[]
  ms: number
}

export type Sent = { ok: true, answer: Answer } | { ok: false, aborted: boolean, message: string, ms: number }

export interface Request {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  path: string
  headers?: Record<string, string>
  body?: string | Buffer
  signal?: AbortSignal
}

/** One browser request; never throws. */
export async function send (ctx: ChaosContext, req: Request): Promise<Sent> {
  const started = now()
  try {
    const res = await fetch(ctx.url + req.path, {
      method: req.method,
      headers: req.headers ?? {},
      ...(req.body !== undefined ? { body: req.body } : {}),
      ...(req.signal !== undefined ? { signal: req.signal } : {}),
      dispatcher: ctx.agent
    })
    const text = await res.text()
    let json: unknown
    try {
      json = text === '' ? undefined : JSON.parse(text)
    } catch {}
    return {
      ok: true,
      answer: { status: res.status, contentType: res.headers.get('content-type'), text, json, setCookie: res.headers.getSetCookie(), ms: now() - started }
    }
  } catch (err) {
    const e = err as Error & { cause?: Error }
    return { ok: false, aborted: e.name === 'AbortError', message: `${e.message}${e.cause !== undefined ? ` (${e.cause.message})` : ''}`, ms: now() - started }
  }
}

/** The code of an answer: OK for 2xx, else the error body's code (or a description of what came). */
export function codeOf (answer: Answer): string {
  if (answer.status >= 200 && answer.status < 300) return 'OK'
  const code = (answer.json as { code?: unknown } | undefined)?.code
  return typeof code === 'string' ? code : `HTTP${answer.status}`
}

export interface Expect {
  /** Error codes this route may answer; a 2xx is allowed unless `okAllowed` is false. */
  allowed: readonly string[]
  boundMs: number
  okAllowed?: boolean
  detail?: Record<string, unknown>
  /** Where an unexpected code is recorded. */
  invariant?: Invariant
}

/**
 * Checks one answer against the contract: the error shape, no 500, a code this route may give,
 * and the latency bound. Counts it under `route`. Returns its code.
 */
export function judge (ctx: ChaosContext, route: string, answer: Answer, expect: Expect): string {
  const code = codeOf(answer)
  const detail = expect.detail ?? {}
  ctx.calls.inc(`${route} ${answer.status} ${code}`)
  if (answer.status >= 500 && (![502, 503, 504].includes(answer.status) || code === 'INTERNAL_ERROR')) {
    ctx.findings.fail('contract/no-500', { route, status: answer.status, body: answer.text.slice(0, 300), ...detail })
  }
  if (answer.status >= 300) {
    const problem = shapeProblem(answer.status, answer.contentType, answer.json)
    if (problem !== undefined) ctx.findings.fail('contract/shape', { route, status: answer.status, problem, body: answer.text.slice(0, 300), ...detail })
  }
  const allowed = code === 'OK' ? expect.okAllowed !== false : expect.allowed.includes(code)
  if (!allowed) {
    ctx.findings.fail(expect.invariant ?? 'contract/expected', { route, status: answer.status, code, body: answer.text.slice(0, 300), ...detail })
  }
  const seen = ctx.latency.get(route) ?? { maxMs: 0, maxShareOfBound: 0 }
  seen.maxMs = Math.max(seen.maxMs, answer.ms)
  seen.maxShareOfBound = Math.max(seen.maxShareOfBound, answer.ms / expect.boundMs)
  ctx.latency.set(route, seen)
  if (answer.ms > expect.boundMs) {
    ctx.findings.fail('contract/latency', { route, ms: Math.round(answer.ms), boundMs: expect.boundMs, code, ...detail })
  }
  return code
}

/** A network error where an HTTP answer was due (the gateway dropped the connection). */
export function networkFailure (ctx: ChaosContext, route: string, sent: { message: string, ms: number }, detail: Record<string, unknown> = {}, invariant: Invariant = 'contract/expected'): void {
  ctx.calls.inc(`${route} network-error`)
  ctx.findings.fail(invariant, { route, networkError: sent.message, ms: Math.round(sent.ms), ...detail })
}

export function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/**
 * The promise's value, or undefined once `ms` have passed. The timer is cleared either way, so
 * that no timer of the test outlives its wait (the end of the run counts active handles).
 */
export async function within<T> (promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([promise, new Promise<undefined>((resolve) => { timer = setTimeout(resolve, ms, undefined) })])
  } finally {
    clearTimeout(timer)
  }
}

/** The session cookie (lg_sid) from a login answer. */
export function sessionCookie (setCookie: readonly string[]): string | undefined {
  for (const c of setCookie) {
    const pair = c.split(';')[0] ?? ''
    if (pair.startsWith('lg_sid=') && pair.length > 'lg_sid='.length) return pair
  }
  return undefined
}
