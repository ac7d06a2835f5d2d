import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'

export const INSTANCE_COOKIE = 'lg_inst'

/**
 * Several instances behind one nginx (deploy/nginx-multi.conf): a session is a TCP socket held by
 * one process, so every request of the session must reach that process; any other instance does
 * not know the session and answers 401. With INSTANCE_NAME set, a successful login also sets
 * `lg_inst=<INSTANCE_NAME>`, which nginx maps to that instance's upstream; logout clears it so
 * the browser's next login is balanced again. The cookie only routes: it grants nothing, and a
 * forged one merely sends the request to an instance where the session cookie is unknown.
 * (A stale one, after the session was lost or expired, is harmless for the same reason.)
 */
async function instanceCookie (fastify: FastifyInstance): Promise<void> {
  const config = fastify.config
  const name = config.instanceName
  if (name === undefined) return
  const options = { path: '/', httpOnly: true, sameSite: 'strict' as const, secure: config.cookieSecure }

  fastify.addHook('onSend', async (request, reply, payload) => {
    const route = request.routeOptions.url
    if (route === '/api/login' && reply.statusCode === 200) reply.setCookie(INSTANCE_COOKIE, name, options)
    else if (route === '/api/logout' && reply.statusCode < 300) reply.clearCookie(INSTANCE_COOKIE, options)
    return payload
  })
}

export default fp(instanceCookie, { name: 'instance-cookie', fastify: '5.x', dependencies: ['config', 'sessions'] })
