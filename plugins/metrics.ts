import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'

// Placeholder: being written (prom-client registry, /metrics).
async function metrics (_fastify: FastifyInstance): Promise<void> {}

export default fp(metrics, { name: 'metrics', fastify: '5.x', dependencies: ['sessions'] })
