import fp from 'fastify-plugin'
import type { FastifyInstance, onRequestHookHandler } from 'fastify'
import { UpstreamUnavailable } from '../lib/errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The global bound on browser requests that reach the legacy server (metrics read it). */
    upstreamLimit: { readonly max: number, readonly inFlight: number, readonly rejected: number }
  }
  interface FastifyContextConfig {
    /**
     * The route's requests become legacy calls on the caller's session, and count against
     * UPSTREAM_MAX_CONCURRENT. Logins are bounded by MAX_SESSIONS and the login rate limit instead.
     */
    upstream?: boolean
  }
}

/**
 * Each session has its own socket and queue (SESSION_QUEUE_MAX), so nothing else bounds the
 * calls that all sessions together put on the legacy server. Past UPSTREAM_MAX_CONCURRENT in
 * flight, a request is answered 503 UPSTREAM_UNAVAILABLE with Retry-After at once, before it
 * queues: the legacy server is protected and the browser is told to come back, rather than
 * waiting behind a backlog it cannot see. Routes take part with `config: { upstream: true }`.
 */
async function upstreamLimit (fastify: FastifyInstance): Promise<void> {
  const max = fastify.config.upstreamMaxConcurrent
  let inFlight = 0
  let rejected = 0

  fastify.decorate('upstreamLimit', {
    max,
    get inFlight () { return inFlight },
    get rejected () { return rejected }
  })

  const bound: onRequestHookHandler = (_request, reply, done) => {
    // A browser already gone has nothing to count (its 'close' would never come again).
    if (reply.raw.destroyed) {
      done()
      return
    }
    if (inFlight >= max) {
      rejected++
      reply.header('retry-after', '1')
      done(new UpstreamUnavailable(`the gateway already has ${max} calls in flight (UPSTREAM_MAX_CONCURRENT); retry shortly`))
      return
    }
    inFlight++
    // 'close' comes exactly once per response, whether it was sent, failed, timed out or the
    // browser went away; the flag makes the release idempotent all the same.
    let released = false
    reply.raw.once('close', () => {
      if (released) return
      released = true
      inFlight--
    })
    done()
  }

  // Decided once per route, when it is declared, rather than per request (request.routeOptions
  // builds a new object on every read): the bound runs first among the route's own onRequest
  // hooks, after the global ones (shutdown, origins, cookies), before the session is looked up.
  // A callback hook: no promise and no microtask turn per call.
  fastify.addHook('onRoute', (route) => {
    if (route.config?.upstream !== true) return
    const own = route.onRequest
    route.onRequest = own === undefined ? [bound] : [bound, ...(Array.isArray(own) ? own : [own])]
  })
}

export default fp(upstreamLimit, { name: 'upstream-limit', fastify: '5.x', dependencies: ['config'] })
