import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { errorBody } from '../lib/errors.js'
import type { Operator, TokenCheck } from '../lib/admin.js'

/**
 * The operator API (CONTRACT §6), on its own listener only (plugins/admin.ts builds that server;
 * these routes never exist on the browsers' port). Every request needs the bearer token; every
 * action is logged with the address it came from.
 */
export interface AdminRoutesOptions {
  operator: Operator
  checkToken: (authorization: string | undefined) => TokenCheck
  /** The same scrape as the browsers' port's GET /metrics. */
  scrape: () => Promise<{ contentType: string, text: string }>
}

const SessionView = Type.Object({
  id: Type.String(),
  user: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  lastActivityAt: Type.String({ format: 'date-time' }),
  calls: Type.Integer(),
  queued: Type.Integer(),
  websockets: Type.Integer()
})
const SessionsReply = Type.Object({ sessions: Type.Array(SessionView) })
const EndedReply = Type.Object({ ended: Type.Integer() })
const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) })
const UserParams = Type.Object({ user: Type.String({ minLength: 1, maxLength: 256 }) })

// One token, so "who" is whoever holds it; the log says so, and from where.
const WHO = 'ADMIN_TOKEN'

async function adminRoutes (fastify: FastifyInstance, opts: AdminRoutesOptions): Promise<void> {
  const { operator, checkToken, scrape } = opts
  const routes = fastify.withTypeProvider<TypeBoxTypeProvider>()

  // Before everything, unknown paths included: without the token nothing is revealed, not even
  // which routes exist.
  fastify.addHook('onRequest', async (request, reply) => {
    const check = checkToken(request.headers.authorization)
    if (check === 'ok') return
    operator.refused()
    request.log.warn({ from: request.ip, method: request.method, url: request.url.split('?')[0], token: check }, 'operator API: request refused (bearer token missing or wrong)')
    // RFC 6750 §3: say which scheme would do.
    reply.header('www-authenticate', check === 'wrong' ? 'Bearer realm="legacy-gateway", error="invalid_token"' : 'Bearer realm="legacy-gateway"')
    return await reply.code(401).send(errorBody('UNAUTHENTICATED', check === 'wrong'
      ? 'The bearer token is not the operator token (ADMIN_TOKEN)'
      : 'The operator API needs Authorization: Bearer <ADMIN_TOKEN>'))
  })

  const done = (request: FastifyRequest, action: string, details: Record<string, unknown> = {}): void => {
    request.log.info({ operator: WHO, from: request.ip, action, ...details }, `operator: ${action}`)
  }

  routes.get('/admin/sessions', {
    schema: { response: { 200: SessionsReply } }
  }, async (request) => {
    const sessions = operator.sessions()
    done(request, 'list_sessions', { sessions: sessions.length })
    return { sessions }
  })

  routes.delete('/admin/sessions/:id', {
    schema: { params: IdParams }
  }, async (request, reply) => {
    const ended = await operator.endSession(request.params.id)
    if (ended === undefined) {
      request.log.info({ operator: WHO, from: request.ip, action: 'end_session', session: request.params.id }, 'operator: end_session: no such session')
      return await reply.code(404).send(errorBody('NOT_FOUND', 'No open session has this id (it ended, or never was): GET /admin/sessions lists them'))
    }
    done(request, 'end_session', { session: ended.id, user: ended.user })
    return await reply.code(204).send()
  })

  routes.delete('/admin/users/:user', {
    schema: { params: UserParams, response: { 200: EndedReply } }
  }, async (request) => {
    const ended = await operator.endUser(request.params.user)
    done(request, 'end_user', { user: request.params.user, ended })
    return { ended }
  })

  routes.post('/admin/drain', async (request, reply) => {
    const changed = operator.setDraining(true)
    done(request, 'drain', { changed })
    return await reply.code(204).send()
  })

  routes.delete('/admin/drain', async (request, reply) => {
    const changed = operator.setDraining(false)
    done(request, 'undrain', { changed })
    return await reply.code(204).send()
  })

  // Scrapes are not operator actions: not logged at info, not counted.
  fastify.get('/metrics', { logLevel: 'warn' }, async (_request, reply) => {
    const { contentType, text } = await scrape()
    return await reply.type(contentType).send(text)
  })
}

// Not encapsulated: the token check is a hook of the whole operator server, its 404s included.
export default fp(adminRoutes, { name: 'admin-routes', fastify: '5.x' })
