import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'

// Placeholder: being written (UDP alarm feed).
async function alarms (_fastify: FastifyInstance): Promise<void> {}

export default fp(alarms, { name: 'alarms', fastify: '5.x', dependencies: ['config'] })
