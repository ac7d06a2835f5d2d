import { isUtf8 } from 'node:buffer'
import type { Server } from 'node:http'
import fp from 'fastify-plugin'
import type { FastifyHttpOptions, FastifyInstance } from 'fastify'
import type { AppConfig, Config } from './lib/config.js'
import { lifecyclePlugin, reapConnectionsPlugin } from './plugins/lifecycle.js'
import configPlugin from './plugins/config.js'
import errorsPlugin, { frameworkError } from './plugins/errors.js'
import sessionsPlugin from './plugins/sessions.js'
import healthRoutes from './routes/health.js'
import loginRoute from './routes/api/login.js'
import rpcRoute from './routes/api/rpc.js'
import sessionRoutes from './routes/api/session.js'
import xmlRoutes from './routes/api/xml.js'
import metricsPlugin from './plugins/metrics.js'
import alarmsPlugin from './plugins/alarms.js'
import readyRoutes from './routes/ready.js'
import alarmWsRoutes from './routes/ws/alarms.js'
import consoleRoutes from './routes/console.js'
import upstreamLimitPlugin from './plugins/upstream-limit.js'
import originsPlugin from './plugins/origins.js'
import policyPlugin from './plugins/policy.js'
import auditPlugin from './plugins/audit.js'
import { REQUEST_ID_HEADER } from './lib/logger.js'
import { BadRequest } from './lib/errors.js'

export interface AppOptions {
  config: AppConfig
}

/**
 * The Fastify server options, timeouts included: server.ts and the tests share them, so that the
 * server under test is the one in production.
 */
export function serverOptions (config: Config): FastifyHttpOptions<Server> {
  return {
    bodyLimit: config.bodyLimit,
    trustProxy: config.trustProxy ?? false,
    // Slow clients may not hold a connection forever (Fastify's requestTimeout is 0 by default):
    // 10 s for the headers (slowloris), 30 s for the whole request, and idle keep-alive
    // connections closed after 72 s, above nginx's 60 s. The time the legacy server takes to
    // answer is bounded separately by LEGACY_TIMEOUT_MS.
    http: { headersTimeout: 10_000 },
    requestTimeout: 30_000,
    keepAliveTimeout: 72_000,
    // We answer 503 SHUTTING_DOWN in the contract's shape ourselves.
    return503OnClosing: false,
    frameworkErrors: frameworkError,
    ajv: {
      // Bodies are taken as sent: "123" is not a number and 5 is not [5].
      customOptions: { coerceTypes: false, removeAdditional: false }
    }
  }
}

/** The whole gateway as one plugin. It never listens: server.ts does, tests use inject or port 0. */
async function app (fastify: FastifyInstance, opts: AppOptions): Promise<void> {
  await fastify.register(configPlugin, { config: opts.config })
  await fastify.register(errorsPlugin)

  // Fastify parses text/plain out of the box; a cross-site form can send text/plain without a
  // preflight, so state-changing routes accept JSON only (415 for anything else).
  fastify.removeContentTypeParser('text/plain')
  // An empty JSON body (a bodyless fetch that still says application/json) means "no body":
  // logout answers 204 and an RPC call gets no parameters, instead of a 400.
  // The body is read as bytes: decoding it as a string would turn invalid UTF-8 into U+FFFD and
  // send the legacy server a password or a value the browser never wrote.
  const parseJson = fastify.getDefaultJsonParser('error', 'error')
  fastify.removeContentTypeParser('application/json')
  fastify.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, bytes: Buffer, done) => {
    if (bytes.length === 0) {
      done(null, null)
      return
    }
    if (!isUtf8(bytes)) {
      done(new BadRequest('the JSON body is not valid UTF-8'))
      return
    }
    parseJson(request, bytes.toString('utf8'), done)
  })

  // Every answer names its request id (lib/logger.ts), so a browser's report can be found in the log.
  fastify.addHook('onRequest', async (request, reply) => { reply.header(REQUEST_ID_HEADER, request.id) })

  await fastify.register(lifecyclePlugin)
  // Before the routes and their hooks: a cross-origin write is refused before its body is read
  // and before its session is looked up.
  await fastify.register(originsPlugin)
  await fastify.register(sessionsPlugin)
  await fastify.register(policyPlugin)
  await fastify.register(auditPlugin)
  await fastify.register(upstreamLimitPlugin)
  await fastify.register(alarmsPlugin)
  await fastify.register(metricsPlugin)
  await fastify.register(healthRoutes)
  await fastify.register(readyRoutes)
  await fastify.register(loginRoute)
  await fastify.register(rpcRoute)
  await fastify.register(sessionRoutes)
  await fastify.register(xmlRoutes)
  await fastify.register(alarmWsRoutes)
  await fastify.register(consoleRoutes)
  // Last, so that its preClose runs after sessions are logged out and WebSockets closed.
  await fastify.register(reapConnectionsPlugin)
}

// Not encapsulated: tests and server.ts see its decorators (sessions, config, …).
export default fp(app, { name: 'legacy-gateway', fastify: '5.x' })
