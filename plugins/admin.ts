import Fastify, { type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Operator, bearerChecker } from '../lib/admin.js'
import { BadRequest } from '../lib/errors.js'
import { genReqId } from '../lib/logger.js'
import errorsPlugin, { frameworkError } from './errors.js'
import { exposition } from './metrics.js'
import adminRoutes from '../routes/admin.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The operator's side (lib/admin.ts): the drain switch, listing and ending sessions. */
    operator: Operator
    /** Where the operator API listens once the app is ready (`http://host:port`); undefined when ADMIN_PORT is unset. */
    readonly adminUrl: string | undefined
  }
}

/**
 * The operator API (CONTRACT §6) on its own listener, ADMIN_HOST:ADMIN_PORT: a second Fastify
 * server, so that its routes cannot exist on the browsers' port, nor the browsers' routes, hooks
 * and cookies on it. It starts listening when the app is ready (before the browsers' port) and
 * closes with it, after the browsers' port: metrics and the session list stay visible while the
 * gateway shuts down. The drain switch exists without the listener too (always off then).
 */
async function admin (fastify: FastifyInstance): Promise<void> {
  const config = fastify.config
  const operator = new Operator(fastify.sessions)
  fastify.decorate('operator', operator)
  let url: string | undefined
  fastify.decorate('adminUrl', { getter: () => url })
  if (config.adminPort === undefined || config.adminToken === undefined) return

  const checkToken = bearerChecker(config.adminToken)
  const log = fastify.log.child({ component: 'admin' })
  let server: FastifyInstance | undefined

  fastify.addHook('onReady', async () => {
    const instance = Fastify({
      loggerInstance: log,
      requestIdHeader: false,
      genReqId,
      // Operators send no bodies; the request timeouts are the browsers' port's (app.ts).
      bodyLimit: 1024,
      http: { headersTimeout: 10_000 },
      requestTimeout: 30_000,
      keepAliveTimeout: 5_000,
      return503OnClosing: false,
      frameworkErrors: frameworkError,
      ajv: { customOptions: { coerceTypes: false, removeAdditional: false } }
    })
    await instance.register(errorsPlugin)
    // No route takes a body: an empty one (curl -X POST -H 'content-type: application/json') is
    // none, anything else is refused rather than ignored.
    instance.removeAllContentTypeParsers()
    instance.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body: Buffer, done) => {
      if (body.length === 0) done(null, null)
      else done(new BadRequest('the operator API takes no request body'))
    })
    await instance.register(adminRoutes, { operator, checkToken, scrape: async () => await exposition(fastify.metrics) })
    try {
      // Not Fastify's "Server listening at …": that line means the browsers' port (tools wait for it).
      url = await instance.listen({ host: config.adminHost, port: config.adminPort, listenTextResolver: (address) => `operator API listening at ${address} (ADMIN_PORT)` })
    } catch (err) {
      await instance.close()
      throw new Error(`the operator API cannot listen on ${config.adminHost}:${config.adminPort}: ${(err as Error).message}`, { cause: err })
    }
    server = instance
  })

  fastify.addHook('onClose', async () => {
    await server?.close()
    server = undefined
  })
}

export default fp(admin, { name: 'admin', fastify: '5.x', dependencies: ['config', 'sessions'] })
