import createError from '@fastify/error'

// Every error code of the contract (CONTRACT §3), in one place. Routes and plugins throw these
// with `{ cause }`; plugins/errors.ts turns anything thrown into the contract's error body.
// Messages are written for the browser's developer: what happened and what to do.

export const BadRequest = createError('BAD_REQUEST', '%s', 400)
export const Unauthenticated = createError('UNAUTHENTICATED', 'No valid session: log in first', 401)
export const SessionLost = createError('SESSION_LOST', 'The session ended (%s): log in again', 401)
export const LoginFailed = createError('LOGIN_FAILED', 'Login refused by the legacy server: %s', 401)
export const Forbidden = createError('FORBIDDEN', '%s', 403)
export const NotFound = createError('NOT_FOUND', '%s', 404)
export const PayloadTooLarge = createError('PAYLOAD_TOO_LARGE', 'Request body is larger than %s bytes', 413)
export const UnsupportedMediaType = createError('UNSUPPORTED_MEDIA_TYPE', '%s', 415)
export const RpcFault = createError('RPC_FAULT', '%s', 422)
export const SessionBusy = createError('SESSION_BUSY', 'Too many calls are waiting on this session (limit %s): retry later', 429)
export const RateLimited = createError('RATE_LIMITED', 'Too many attempts: retry in %s', 429)
export const BadUpstreamResponse = createError('BAD_UPSTREAM_RESPONSE', 'The legacy server sent an unusable answer: %s', 502)
export const UpstreamUnavailable = createError('UPSTREAM_UNAVAILABLE', 'The legacy server cannot be reached: %s', 503)
export const TooManySessions = createError('TOO_MANY_SESSIONS', 'The gateway holds its maximum of %s sessions: retry later', 503)
export const ShuttingDown = createError('SHUTTING_DOWN', 'The gateway is shutting down: retry on another instance or later', 503)
export const UpstreamTimeout = createError('UPSTREAM_TIMEOUT', 'The legacy server did not answer within %s ms; the session is closed', 504)
export const InternalError = createError('INTERNAL_ERROR', 'Internal error', 500)

/** A legacy fault carries its faultCode to the browser beside the standard body. */
export function rpcFault (faultCode: number, faultString: string): Error & { statusCode: number, code: string, faultCode: number } {
  const err = new RpcFault(faultString) as Error & { statusCode: number, code: string, faultCode: number }
  err.faultCode = faultCode
  return err
}

/** The codes a browser can see: used to assert that every answer stays inside the contract. */
export const CONTRACT_CODES = new Set([
  'BAD_REQUEST', 'UNAUTHENTICATED', 'SESSION_LOST', 'LOGIN_FAILED', 'FORBIDDEN', 'NOT_FOUND',
  'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE', 'RPC_FAULT', 'SESSION_BUSY', 'RATE_LIMITED',
  'BAD_UPSTREAM_RESPONSE', 'UPSTREAM_UNAVAILABLE', 'TOO_MANY_SESSIONS', 'SHUTTING_DOWN',
  'UPSTREAM_TIMEOUT'
])
