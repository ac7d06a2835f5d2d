import type { FastifyInstance } from 'fastify'

// Placeholder: being written (demo console and browser client, served at /).
export default async function consoleRoutes (_fastify: FastifyInstance): Promise<void> {}
