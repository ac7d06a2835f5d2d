import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { FastifyServerOptions } from 'fastify'
import type { Config } from './config.js'

// Cookies, passwords and session ids never reach the log. Fastify's request serializer logs no
// headers at all; these paths are the second line of defence for anything that logs an object
// carrying them (a request, a login body, a session).
export const REDACT = [
  'req.headers.cookie',
  'req.headers.authorization',
  'res.headers["set-cookie"]',
  'headers.cookie',
  'headers.authorization',
  'password',
  '*.password',
  'sessionId',
  '*.sessionId',
  'cookie',
  '*.cookie'
]

export const REQUEST_ID_HEADER = 'x-request-id'

// An id from nginx ($request_id: 32 hex digits), a load balancer or the browser is kept so that
// one request can be followed through every log; anything else (too long, spaces, control or
// markup characters, a repeated header joined with ", ") is replaced by a fresh UUID, so a client
// cannot inject text into the log through it.
const SAFE_REQUEST_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/

export function genReqId (req: IncomingMessage): string {
  const incoming = req.headers[REQUEST_ID_HEADER]
  if (typeof incoming === 'string' && SAFE_REQUEST_ID.test(incoming)) return incoming
  return randomUUID()
}

export interface LogDestination {
  write: (line: string) => unknown
}

/**
 * The logger and request-id options of the Fastify server: server.ts and the tests share them,
 * so what the tests assert about the log is what production writes. `stream` replaces stdout.
 */
export function loggerOptions (config: Pick<Config, 'logLevel'>, stream?: LogDestination): Pick<FastifyServerOptions, 'logger' | 'genReqId' | 'requestIdHeader'> {
  return {
    logger: {
      level: config.logLevel,
      redact: { paths: REDACT, censor: '[redacted]' },
      ...(stream === undefined ? {} : { stream })
    },
    // genReqId reads and checks the header itself (Fastify's requestIdHeader would take any
    // value). Log lines carry it as `reqId`.
    requestIdHeader: false,
    genReqId
  }
}
