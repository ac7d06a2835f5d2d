import fp from 'fastify-plugin'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { CODE_BY_STATUS, ERRORS, RpcFault, codeOf, errorBody, type ErrorBody, type ErrorCode } from '../lib/errors.js'

declare module 'fastify' {
  interface FastifyReply {
    /** The contract code this answer carries when it is an error (sendError); null otherwise. */
    errorCode: ErrorCode | null
  }
}

// The one place errors become answers: whatever a route, a hook, a plugin or Fastify itself
// throws is answered with a code of the error table (lib/errors.ts) in the contract's body.

/** Fastify's own errors that a request can cause, by Fastify's code. */
export const FASTIFY_CODES: ReadonlyMap<string, ErrorCode> = new Map([
  ['FST_ERR_CTP_INVALID_MEDIA_TYPE', 'UNSUPPORTED_MEDIA_TYPE'],
  ['FST_ERR_CTP_BODY_TOO_LARGE', 'PAYLOAD_TOO_LARGE'],
  ['FST_ERR_CTP_INVALID_JSON_BODY', 'BAD_REQUEST'],
  ['FST_ERR_CTP_EMPTY_JSON_BODY', 'BAD_REQUEST'],
  ['FST_ERR_CTP_INVALID_CONTENT_LENGTH', 'BAD_REQUEST'],
  ['FST_ERR_VALIDATION', 'BAD_REQUEST'],
  // A path the router cannot decode (`%zz`, an escape that is not UTF-8): see frameworkError.
  ['FST_ERR_BAD_URL', 'BAD_REQUEST'],
  // A QUERY request without a Content-Type, or one that must have a body and has none.
  ['FST_ERR_ROUTE_MISSING_CONTENT_TYPE', 'BAD_REQUEST'],
  ['FST_ERR_ROUTE_MISSING_CONTENT', 'BAD_REQUEST'],
  ['FST_ERR_NOT_FOUND', 'NOT_FOUND']
])

/** Turns anything thrown into the contract's body; never a stack trace, never an unknown code. */
export function toErrorBody (err: FastifyError): ErrorBody {
  if (err.validation) {
    return errorBody('BAD_REQUEST', `${err.validationContext ?? 'request'}${err.message.replace(/^(body|params|querystring|headers)/, '')}`)
  }
  if (err instanceof RpcFault) return { ...errorBody('RPC_FAULT', err.message), faultCode: err.faultCode }
  const code = codeOf(err) ?? FASTIFY_CODES.get(err.code)
  if (code !== undefined) return errorBody(code, err.message)
  // A plugin's error with only a status: a 4xx keeps it (it says what happened) under the code
  // for that status, or BAD_REQUEST; anything else is a bug.
  const status = err.statusCode ?? 500
  if (status >= 400 && status < 500) return errorBody(CODE_BY_STATUS.get(status) ?? 'BAD_REQUEST', err.message, status)
  return errorBody('INTERNAL_ERROR', ERRORS.INTERNAL_ERROR.message)
}

function sendError (err: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const body = toErrorBody(err)
  if (body.code === 'INTERNAL_ERROR') {
    request.log.error({ err }, 'unhandled error')
  } else {
    request.log.info({ code: body.code, statusCode: body.statusCode }, body.message)
  }
  reply.errorCode = body.code
  return reply.code(body.statusCode).type('application/json; charset=utf-8').send(body)
}

/**
 * Fastify's `frameworkErrors` (server options, app.ts): a path the router cannot decode never
 * reaches a route or the error handler, and is answered in the contract's shape too.
 */
export function frameworkError (err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  sendError(err, request, reply)
}

async function errors (fastify: FastifyInstance): Promise<void> {
  // The code an error answer carried, for the audit line (plugins/audit.ts).
  fastify.decorateReply('errorCode', null)
  fastify.setErrorHandler(sendError)

  fastify.setNotFoundHandler((request, reply) => {
    return reply.code(404).send(errorBody('NOT_FOUND', `Route ${request.method} ${request.url.split('?')[0]} not found`))
  })
}

export default fp(errors, { name: 'errors', fastify: '5.x' })
