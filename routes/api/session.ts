import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { SESSION_COOKIE } from '../../plugins/sessions.js'

const SessionReply = Type.Object({
  user: Type.String(),
  connected: Type.Boolean(),
  createdAt: Type.String({ format: 'date-time' }),
  lastActivityAt: Type.String({ format: 'date-time' })
})

export default async function sessionRoutes (fastify: FastifyInstance): Promise<void> {
  const routes = fastify.withTypeProvider<TypeBoxTypeProvider>()

  routes.get('/api/session', {
    onRequest: fastify.requireSession,
    schema: { response: { 200: SessionReply } }
  }, async (request) => {
    const session = request.getSession()
    return {
      user: session.user,
      connected: session.upstream.connected,
      createdAt: new Date(session.createdAt).toISOString(),
      lastActivityAt: new Date(session.lastActivityAt).toISOString()
    }
  })

  // Logging out is idempotent: without a live session it still clears the cookie and answers 204.
  routes.post('/api/logout', {
    schema: { response: { 204: Type.Null() } }
  }, async (request, reply) => {
    const id = request.cookies[SESSION_COOKIE]
    const session = id !== undefined ? fastify.sessions.get(id) : undefined
    if (session !== undefined) {
      if (fastify.auditing) request.auditCall = { kind: 'logout', user: session.user }
      request.log.info({ user: session.user }, 'logout')
      await fastify.sessions.logout(session, 'logout')
    }
    fastify.clearSessionCookie(reply)
    return reply.code(204).send(null)
  })
}
