import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import rateLimit from '@fastify/rate-limit'
import { RateLimited } from '../../lib/errors.js'
import { SESSION_COOKIE } from '../../plugins/sessions.js'

const LoginBody = Type.Object({
  username: Type.String({ minLength: 1, maxLength: 256 }),
  password: Type.String({ maxLength: 1024 })
})

const LoginReply = Type.Object({
  user: Type.String(),
  result: Type.Unknown()
})

export default async function loginRoute (fastify: FastifyInstance): Promise<void> {
  const routes = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { loginRateLimit } = fastify.config
  if (loginRateLimit > 0) {
    await fastify.register(rateLimit, {
      global: false,
      errorResponseBuilder: (_request, context) => new RateLimited(context.after)
    })
  }

  routes.post('/api/login', {
    schema: { body: LoginBody, response: { 200: LoginReply } },
    config: loginRateLimit > 0
      ? { rateLimit: { max: loginRateLimit, timeWindow: 60_000, keyGenerator: (request) => request.ip } }
      : {}
  }, async (request, reply) => {
    const { username, password } = request.body
    if (fastify.auditing) request.auditCall = { kind: 'login', user: username }
    const { session, result } = await fastify.sessions.login(username, password)
    // A browser that logs in again gives up its previous session and socket.
    const previousId = request.cookies[SESSION_COOKIE]
    const previous = previousId !== undefined ? fastify.sessions.get(previousId) : undefined
    if (previous !== undefined && previous !== session) {
      fastify.sessions.logout(previous, 'replaced').catch(() => {})
    }
    fastify.setSessionCookie(reply, session)
    request.log.info({ user: session.user }, 'login')
    return { user: session.user, result }
  })
}
