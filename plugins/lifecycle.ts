import type { Socket } from 'node:net'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { ShuttingDown } from '../lib/errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** True from the moment close() is called: new requests get 503 SHUTTING_DOWN. */
    readonly shuttingDown: boolean
  }
  interface FastifyContextConfig {
    /** The route still answers while the gateway shuts down (liveness: the process is alive). */
    duringShutdown?: boolean
  }
}

/**
 * Graceful close, part 1 (registered first): refuse new requests with the contract's 503, but for
 * routes with `config: { duringShutdown: true }`.
 * Part 2 is `reapConnections`, registered last, so that it runs after every other preClose hook
 * (sessions logged out, WebSockets closed).
 */
async function lifecycle (fastify: FastifyInstance): Promise<void> {
  let shuttingDown = false
  fastify.decorate('shuttingDown', { getter: () => shuttingDown })
  fastify.addHook('preClose', async () => { shuttingDown = true })
  // A callback hook, not an async one: it runs on every request, and an async hook costs a promise
  // and a microtask turn each time.
  fastify.addHook('onRequest', (request, reply, done) => {
    if (!shuttingDown || request.routeOptions.config.duringShutdown === true) {
      done()
      return
    }
    reply.header('connection', 'close')
    done(new ShuttingDown())
  })
}

/**
 * Node's server.close() only closes keep-alive connections that are idle *after a request*; a
 * connection that never sent one (a browser's speculative preconnect, a half-open client) would
 * hold shutdown until the headers timeout. Every connection without a request in flight is
 * ended now; the others right after their answer is sent.
 */
async function reapConnections (fastify: FastifyInstance): Promise<void> {
  const inFlight = new Map<Socket, number>()
  let closing = false

  const release = (socket: Socket): void => {
    socket.end()
    // A peer that never closes its side must not hold the process.
    setTimeout(() => socket.destroy(), 1000).unref()
  }

  fastify.server.on('connection', (socket: Socket) => {
    inFlight.set(socket, 0)
    socket.once('close', () => inFlight.delete(socket))
  })
  fastify.server.on('request', (req, res) => {
    const socket = req.socket
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1)
    res.once('close', () => {
      const left = (inFlight.get(socket) ?? 1) - 1
      if (!inFlight.has(socket)) return
      inFlight.set(socket, left)
      if (closing && left === 0) release(socket)
    })
  })
  fastify.addHook('preClose', async () => {
    closing = true
    for (const [socket, count] of inFlight) {
      if (count === 0) release(socket)
    }
  })
}

export const lifecyclePlugin = fp(lifecycle, { name: 'lifecycle', fastify: '5.x' })
export const reapConnectionsPlugin = fp(reapConnections, { name: 'reap-connections', fastify: '5.x' })
