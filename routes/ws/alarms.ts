import type { FastifyInstance } from 'fastify'

// Placeholder: being written (GET /ws/alarms).
export default async function alarmWsRoutes (_fastify: FastifyInstance): Promise<void> {}
