import { STATUS_CODES } from 'node:http'
import fp from 'fastify-plugin'
import type { FastifyError, FastifyInstance } from 'fastify'
import { CONTRACT_CODES } from '../lib/errors.js'

export interface ErrorBody {
  statusCode: number
  code: string
  error: string
  message: string
  faultCode?: number
}

// Fastify's own errors, renamed to the contract's codes.
const FASTIFY_CODES: Record<string, [number, string]> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'UNSUPPORTED_MEDIA_TYPE'],
  FST_ERR_CTP_INVALID_TYPE: [415, 'UNSUPPORTED_MEDIA_TYPE'],
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'PAYLOAD_TOO_LARGE'],
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'BAD_REQUEST'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'BAD_REQUEST'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'BAD_REQUEST'],
  FST_ERR_VALIDATION: [400, 'BAD_REQUEST']
}

const BY_STATUS: Record<number, string> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'NOT_FOUND',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'RATE_LIMITED'
}

export function errorBody (statusCode: number, code: string, message: string): ErrorBody {
  return { statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message }
}

/** Turns anything thrown into the contract's body; never a stack trace, never an unknown code. */
export function toErrorBody (err: FastifyError & { faultCode?: number }): ErrorBody {
  if (err.validation) {
    return errorBody(400, 'BAD_REQUEST', `${err.validationContext ?? 'request'}${err.message.replace(/^(body|params|querystring|headers)/, '')}`)
  }
  if (CONTRACT_CODES.has(err.code) && err.statusCode !== undefined) {
    const body = errorBody(err.statusCode, err.code, err.message)
    if (err.code === 'RPC_FAULT') body.faultCode = err.faultCode ?? 0
    return body
  }
  const known = FASTIFY_CODES[err.code]
  if (known) return errorBody(known[0], known[1], err.message)
  const status = err.statusCode ?? 500
  if (status >= 400 && status < 500) {
    return errorBody(status, BY_STATUS[status] ?? 'BAD_REQUEST', err.message)
  }
  return errorBody(500, 'INTERNAL_ERROR', 'Internal error')
}

async function errors (fastify: FastifyInstance): Promise<void> {
  fastify.setErrorHandler((err: FastifyError & { faultCode?: number }, request, reply) => {
    const body = toErrorBody(err)
    if (body.statusCode >= 500 && body.code === 'INTERNAL_ERROR') {
      request.log.error({ err }, 'unhandled error')
    } else {
      request.log.info({ code: body.code, statusCode: body.statusCode }, body.message)
    }
    return reply.code(body.statusCode).type('application/json; charset=utf-8').send(body)
  })

  fastify.setNotFoundHandler((request, reply) => {
    return reply.code(404).send(errorBody(404, 'NOT_FOUND', `Route ${request.method} ${request.url.split('?')[0]} not found`))
  })
}

export default fp(errors, { name: 'errors', fastify: '5.x' })
