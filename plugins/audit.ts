import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'

/** What an audit line says of the call (CONTRACT §2 AUDIT_LOG); never params, bodies or cookies. */
export interface AuditCall {
  /** `login`, `logout`, `rpc`, `xml` (and `batch`). */
  kind: 'login' | 'logout' | 'rpc' | 'xml' | 'batch'
  /** The session's user; at login, the name the browser tried. */
  user: string
  /** The XML-RPC method (rpc). */
  method?: string
  /** The HTTP method and the normalised path, without its query (xml); null when the path was refused as unusable. */
  httpMethod?: string
  path?: string | null
}

declare module 'fastify' {
  interface FastifyInstance {
    /** AUDIT_LOG is on: routes then name their call with `request.auditCall`. */
    auditing: boolean
  }
  interface FastifyRequest {
    /** The legacy call this request makes, for the audit line; null when it makes none. */
    auditCall: AuditCall | null
  }
}

// A method name is at most 128 characters once validated; an audit line is written before that.
const MAX_NAME = 256

/**
 * AUDIT_LOG=true: one JSON log line per browser-initiated legacy call, written when the answer has
 * gone (`audit: true`, kind, user, method or HTTP method and path, outcome = the contract code or
 * `ok`, statusCode, ms, reqId, ip). Policy refusals are audited too. The lines go through a logger
 * of their own at `info`, so that LOG_LEVEL=warn does not silently drop the trail.
 */
async function audit (fastify: FastifyInstance): Promise<void> {
  const enabled = fastify.config.auditLog
  fastify.decorate('auditing', enabled)
  fastify.decorateRequest('auditCall', null)
  if (!enabled) return
  const log = fastify.log.child({ audit: true }, { level: 'info' })

  fastify.addHook('onResponse', async (request: FastifyRequest, reply: FastifyReply) => {
    const call = request.auditCall
    if (call === null) return
    log.info({
      kind: call.kind,
      user: call.user,
      ...(call.method !== undefined ? { method: call.method.slice(0, MAX_NAME) } : {}),
      ...(call.httpMethod !== undefined ? { httpMethod: call.httpMethod, path: call.path ?? null } : {}),
      outcome: reply.errorCode ?? 'ok',
      statusCode: reply.statusCode,
      ms: Math.round(reply.elapsedTime * 10) / 10,
      reqId: request.id,
      ip: request.ip
    }, 'audit')
  })
}

export default fp(audit, { name: 'audit', fastify: '5.x', dependencies: ['config', 'errors'] })
