import { STATUS_CODES } from 'node:http'
import createError, { type FastifyErrorConstructor } from '@fastify/error'

interface ErrorSpec {
  readonly status: number
  readonly message: string
  readonly outcome?: string
  readonly byStatus?: true
  readonly contract?: false
}

/**
 * The gateway's error codes: CONTRACT §3 and §6 as far as the gateway implements them, plus its
 * own two (`contract: false`). Everything else is derived from this table: the error classes
 * routes and plugins throw, the contract's set of codes, the error body, the metric outcome of a
 * failed legacy call. A test checks the README's error section against it.
 *
 * - `message`: the template of @fastify/error (`%s` is the class's one argument; for a code without
 *   a class, the message of the error it answers). Written for the browser's developer: what
 *   happened and what to do.
 * - `outcome`: the `outcome` label of legacy_gateway_upstream_calls_total when a legacy call fails
 *   with this code (codes no legacy call fails with have none).
 * - `byStatus`: the code an error from elsewhere (a plugin, Fastify) that has only this 4xx status
 *   is answered with; at most one code per status.
 */
export const ERRORS = {
  BAD_REQUEST: { status: 400, message: '%s', outcome: 'bad_request', byStatus: true },
  UNAUTHENTICATED: { status: 401, message: 'No valid session: log in first', byStatus: true },
  SESSION_LOST: { status: 401, message: 'The session ended (%s): log in again', outcome: 'lost' },
  LOGIN_FAILED: { status: 401, message: 'Login refused by the legacy server: %s' },
  FORBIDDEN: { status: 403, message: '%s', byStatus: true },
  NOT_FOUND: { status: 404, message: '%s', byStatus: true },
  // Fastify answers a wrong method on a known path 404, by design; a 405 is an error that says so
  // itself (a plugin's, a route's). NOT_FOUND would misname it.
  METHOD_NOT_ALLOWED: { status: 405, message: '%s', byStatus: true, contract: false },
  PAYLOAD_TOO_LARGE: { status: 413, message: '%s', byStatus: true },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: '%s', byStatus: true },
  RPC_FAULT: { status: 422, message: '%s', outcome: 'fault' },
  SESSION_BUSY: { status: 429, message: 'Too many calls are waiting on this session (limit %s): retry later', outcome: 'busy' },
  RATE_LIMITED: { status: 429, message: 'Too many attempts: retry in %s', byStatus: true },
  // Also what an unexpected error in decoding an answer counts as (outcomeOf).
  BAD_UPSTREAM_RESPONSE: { status: 502, message: 'The legacy server sent an unusable answer: %s', outcome: 'bad_response' },
  UPSTREAM_UNAVAILABLE: { status: 503, message: 'The legacy server cannot be reached: %s', outcome: 'unavailable' },
  TOO_MANY_SESSIONS: { status: 503, message: 'The gateway holds its maximum of %s sessions: retry later' },
  SHUTTING_DOWN: { status: 503, message: 'The gateway is shutting down: retry on another instance or later' },
  // An operator drains the instance before maintenance (POST /admin/drain): open sessions go on.
  DRAINING: { status: 503, message: 'This gateway instance takes no new logins while an operator drains it for maintenance: retry in a moment (a load balancer sends you to another instance)' },
  UPSTREAM_TIMEOUT: { status: 504, message: 'The legacy server did not answer within %s ms; the session is closed', outcome: 'timeout' },
  // A bug, never an answer the gateway means to give: nothing throws it, the error handler falls
  // back to it (and logs the error) so that no stack trace or internal message reaches a browser.
  INTERNAL_ERROR: { status: 500, message: 'Internal error', contract: false }
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof ERRORS
type Entry = (typeof ERRORS)[ErrorCode]

/** How a failed legacy call is counted: the `outcome` of its code in the table. */
export type ErrorOutcome = Extract<Entry, { outcome: string }>['outcome']
/** The outcome of one legacy call, without the method name (metric labels stay bounded). */
export type CallOutcome = 'ok' | ErrorOutcome

const entries = Object.keys(ERRORS).filter(isErrorCode).map((code): [ErrorCode, ErrorSpec] => [code, ERRORS[code]])

/** The codes of the contract: every error a browser or an operator sees carries one. */
export const CONTRACT_CODES: ReadonlySet<string> = new Set(entries.filter(([, e]) => e.contract !== false).map(([code]) => code))

/** The code for an error that has nothing but a 4xx status (`byStatus`). */
export const CODE_BY_STATUS: ReadonlyMap<number, ErrorCode> = new Map(entries.filter(([, e]) => e.byStatus === true).map(([code, e]) => [e.status, code]))

export function isErrorCode (code: string): code is ErrorCode {
  return Object.hasOwn(ERRORS, code)
}

export interface ErrorBody {
  statusCode: number
  code: ErrorCode
  error: string
  message: string
  faultCode?: number
}

/** The contract's error body. `statusCode` is the table's, unless an error came with its own. */
export function errorBody (code: ErrorCode, message: string, statusCode: number = ERRORS[code].status): ErrorBody {
  return { statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message }
}

type Options = { cause: unknown }
/** A template with `%s` takes its one value; every class takes `{ cause }` last. */
type ArgsOf<M extends string> = M extends `${string}%s${string}` ? [detail: string | number, options?: Options] : [options?: Options]
type ErrorClass<C extends ErrorCode> = FastifyErrorConstructor<{ code: C, statusCode: (typeof ERRORS)[C]['status'] }, ArgsOf<(typeof ERRORS)[C]['message']>>

// The class of each code errors are thrown with: an error made by one is the gateway's own.
const CLASSES = new Map<string, abstract new (...args: never[]) => unknown>()

function errorClass<C extends ErrorCode> (code: C): ErrorClass<C> {
  const cls = createError<C, (typeof ERRORS)[C]['status'], ArgsOf<(typeof ERRORS)[C]['message']>>(code, ERRORS[code].message, ERRORS[code].status)
  CLASSES.set(code, cls)
  return cls
}

/** The table code of an error made by one of the classes below, else undefined. */
export function codeOf (err: unknown): ErrorCode | undefined {
  if (!(err instanceof Error) || !('code' in err) || typeof err.code !== 'string') return undefined
  const cls = CLASSES.get(err.code)
  return cls !== undefined && err instanceof cls && isErrorCode(err.code) ? err.code : undefined
}

const OUTCOME_OF: ReadonlyMap<string, ErrorOutcome> = new Map(Object.entries(ERRORS)
  .flatMap(([code, e]): Array<[string, ErrorOutcome]> => 'outcome' in e ? [[code, e.outcome]] : []))

/** Every value of the outcome label, `ok` first: each series exists (at 0) from the first scrape. */
export const CALL_OUTCOMES: readonly CallOutcome[] = ['ok', ...new Set(OUTCOME_OF.values())]

/** The outcome label of a legacy call that failed with `err`; an unexpected error is a bad answer. */
export function outcomeOf (err: unknown): ErrorOutcome {
  const code = codeOf(err)
  return (code === undefined ? undefined : OUTCOME_OF.get(code)) ?? 'bad_response'
}

// Routes and plugins throw these with `{ cause }`; plugins/errors.ts answers them.
export const BadRequest = errorClass('BAD_REQUEST')
export const Unauthenticated = errorClass('UNAUTHENTICATED')
export const SessionLost = errorClass('SESSION_LOST')
export const LoginFailed = errorClass('LOGIN_FAILED')
export const Forbidden = errorClass('FORBIDDEN')
export const UnsupportedMediaType = errorClass('UNSUPPORTED_MEDIA_TYPE')
export const SessionBusy = errorClass('SESSION_BUSY')
export const RateLimited = errorClass('RATE_LIMITED')
export const BadUpstreamResponse = errorClass('BAD_UPSTREAM_RESPONSE')
export const UpstreamUnavailable = errorClass('UPSTREAM_UNAVAILABLE')
export const TooManySessions = errorClass('TOO_MANY_SESSIONS')
export const ShuttingDown = errorClass('SHUTTING_DOWN')
export const Draining = errorClass('DRAINING')
export const UpstreamTimeout = errorClass('UPSTREAM_TIMEOUT')

/** A legacy `<fault>`: its faultString is the message; its faultCode travels beside the body. */
export class RpcFault extends errorClass('RPC_FAULT') {
  constructor (readonly faultCode: number, faultString: string) {
    super(faultString)
  }
}
