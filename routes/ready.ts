import type { FastifyInstance } from 'fastify'

// Placeholder: being written (/readyz).
export default async function readyRoutes (_fastify: FastifyInstance): Promise<void> {}
