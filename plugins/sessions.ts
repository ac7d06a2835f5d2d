import { setTimeout as delay } from 'node:timers/promises'
import fp from 'fastify-plugin'
import cookie from '@fastify/cookie'
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import { SessionStore, describeEnd, type Session } from '../lib/sessions.js'
import { SessionLost, Unauthenticated } from '../lib/errors.js'
import { RequestLogger, type PinoLike } from '../lib/request-logger.js'

export const SESSION_COOKIE = 'lg_sid'
/**
 * Several instances behind one nginx (deploy/nginx-multi.conf): a session is a TCP socket held by
 * one process, so every request of the session must reach that process; any other instance does
 * not know the session and answers 401. With INSTANCE_NAME set, this cookie, `lg_inst=<name>`,
 * comes and goes with the session cookie, and nginx maps it to that instance's upstream; cleared
 * at logout, the browser's next login is balanced again. It only routes: it grants nothing, and a
 * forged one merely sends the request to an instance where the session cookie is unknown. (A
 * stale one, after the session was lost or expired, is harmless for the same reason.)
 */
export const INSTANCE_COOKIE = 'lg_inst'

declare module 'fastify' {
  interface FastifyInstance {
    sessions: SessionStore
    /**
     * onRequest hook of the routes that need a logged-in session: resolves it from the session
     * cookie (then `request.getSession()` returns it), or answers 401.
     */
    requireSession: onRequestHookHandler
    /** Sets the session cookie, and with INSTANCE_NAME the instance cookie beside it. */
    setSessionCookie: (reply: FastifyReply, session: Session) => void
    /** Clears both. */
    clearSessionCookie: (reply: FastifyReply) => void
  }
  interface FastifyRequest {
    /** The caller's session, as requireSession resolved it; 401 UNAUTHENTICATED on a route without requireSession. */
    getSession: () => Session
    /** Where requireSession keeps it (null before it, or without it); routes read it with getSession(). */
    session: Session | null
  }
}

// What shutdown keeps, at most, for closing connections after the sessions' drain.
const SHUTDOWN_RESERVE_MS = 500

// A session id is 256 random bits in base64url; anything else is not worth a map lookup.
const SESSION_ID = /^[A-Za-z0-9_-]{43}$/

async function sessions (fastify: FastifyInstance): Promise<void> {
  const config = fastify.config
  await fastify.register(cookie)

  const store = new SessionStore({
    legacyUrl: config.legacyUrl,
    charset: config.legacyCharset,
    timeoutMs: config.legacyTimeoutMs,
    connectTimeoutMs: config.legacyConnectTimeoutMs,
    queueMax: config.sessionQueueMax,
    maxResponseBytes: config.upstreamMaxResponseBytes,
    maxSessions: config.maxSessions,
    idleMs: config.sessionIdleMs,
    loginMethod: config.legacyLoginMethod,
    logoutMethod: config.legacyLogoutMethod,
    heartbeatMethod: config.legacyHeartbeatMethod,
    heartbeatMs: config.legacyHeartbeatMs,
    loginParams: config.legacyLoginParams,
    logoutParams: config.legacyLogoutParams,
    heartbeatParams: config.legacyHeartbeatParams,
    logger: {
      info: (obj, msg) => fastify.log.info(obj, msg),
      warn: (obj, msg) => fastify.log.warn(obj, msg)
    }
  })
  fastify.decorate('sessions', store)

  // The session hook below binds the user to the request's logger on every call; with a lazy
  // request logger (lib/request-logger.ts) neither that nor Fastify's per-request child costs a
  // pino child unless the request writes a line. Without a pino logger, Fastify's own way.
  fastify.setChildLoggerFactory(function (logger, bindings, opts) {
    const pino = logger as unknown as Partial<PinoLike>
    if (typeof pino.levels?.values !== 'object' || typeof pino.child !== 'function') return logger.child(bindings, opts)
    return new RequestLogger(pino as PinoLike, bindings, opts as Record<string, unknown>) as unknown as typeof logger
  })
  fastify.decorateRequest('session', null)
  fastify.decorateRequest('getSession', function (this: FastifyRequest): Session {
    if (this.session === null) throw new Unauthenticated()
    return this.session
  })

  const cookieOptions = {
    path: '/',
    httpOnly: true,
    sameSite: 'strict' as const,
    secure: config.cookieSecure
  }

  const instance = config.instanceName
  fastify.decorate('setSessionCookie', (reply: FastifyReply, session: Session) => {
    reply.setCookie(SESSION_COOKIE, session.id, cookieOptions)
    if (instance !== undefined) reply.setCookie(INSTANCE_COOKIE, instance, cookieOptions)
  })
  fastify.decorate('clearSessionCookie', (reply: FastifyReply) => {
    reply.clearCookie(SESSION_COOKIE, cookieOptions)
    if (instance !== undefined) reply.clearCookie(INSTANCE_COOKIE, cookieOptions)
  })

  // The identity comes from the cookie alone; nothing in the query, headers or body is consulted.
  // A callback hook, not an async one: it runs on every call, and an async hook costs a promise and
  // a microtask turn each time.
  const requireSession: onRequestHookHandler = (request, _reply, done) => {
    const id = request.cookies[SESSION_COOKIE]
    if (id === undefined || !SESSION_ID.test(id)) {
      done(new Unauthenticated())
      return
    }
    const session = store.get(id)
    if (session === undefined) {
      const ended = store.endedReason(id)
      done(ended !== undefined ? new SessionLost(describeEnd(ended)) : new Unauthenticated())
      return
    }
    store.touch(session)
    request.session = session
    // setBindings, not child(): no second logger object per request on the hot path. (Without a
    // logger Fastify's stand-in has no bindings at all.)
    const log = request.log as typeof request.log & { setBindings?: (bindings: Record<string, unknown>) => void }
    log.setBindings?.({ user: session.user })
    done()
  }
  fastify.decorate('requireSession', requireSession)

  // Shutdown: log every session out on the legacy side (each logout queues behind the calls
  // already on its socket, so in-flight calls finish first). SHUTDOWN_TIMEOUT_MS bounds the whole
  // shutdown, so the drain gets it less a reserve for what comes after: past that, whatever is
  // still open is destroyed, and the calls hanging on it are answered (401 SESSION_LOST) instead
  // of holding their HTTP requests, and with them the server's close, until LEGACY_TIMEOUT_MS.
  const drainMs = config.shutdownTimeoutMs - Math.min(SHUTDOWN_RESERVE_MS, Math.floor(config.shutdownTimeoutMs / 5))
  fastify.addHook('preClose', async () => {
    const drained = await Promise.race([
      store.drain().then(() => true),
      delay(drainMs, false, { ref: false })
    ])
    if (!drained) {
      fastify.log.warn({ sessions: store.size }, 'shutdown bound reached: closing the remaining legacy connections')
      await store.close()
    }
  })
  fastify.addHook('onClose', async () => {
    await store.close()
  })
}

export default fp(sessions, { name: 'sessions', fastify: '5.x', dependencies: ['config'] })
