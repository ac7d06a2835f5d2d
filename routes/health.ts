import type { FastifyInstance } from 'fastify'

export default async function healthRoutes (fastify: FastifyInstance): Promise<void> {
  // Liveness: the event loop answers. Readiness (/readyz) checks the legacy side.
  // It keeps answering while the gateway shuts down (plugins/lifecycle.ts): the process is alive.
  fastify.get('/healthz', { logLevel: 'warn', config: { duringShutdown: true } }, async () => ({ status: 'ok' }))
}
