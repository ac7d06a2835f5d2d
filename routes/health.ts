import type { FastifyInstance } from 'fastify'

export default async function healthRoutes (fastify: FastifyInstance): Promise<void> {
  // Liveness: the event loop answers. Readiness (/readyz) checks the legacy side.
  fastify.get('/healthz', { logLevel: 'warn' }, async () => ({ status: 'ok' }))
}
