import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Discovery } from '../lib/discovery.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The legacy server's self-description and whether batches travel as one multicall. */
    discovery: Discovery
  }
}

// A legacy server's methods change with its releases, not by the minute.
export const CATALOGUE_TTL_MS = 5 * 60_000
// Filling is bounded: details that are not in by then stay null.
export const CATALOGUE_FILL_MS = 10_000
export const CATALOGUE_MAX_METHODS = 2000

/** The legacy server's self-description, one per gateway (lib/discovery.ts). */
async function discovery (fastify: FastifyInstance): Promise<void> {
  fastify.decorate('discovery', new Discovery({
    multicall: fastify.config.legacyMulticall,
    ttlMs: CATALOGUE_TTL_MS,
    fillMs: CATALOGUE_FILL_MS,
    maxMethods: CATALOGUE_MAX_METHODS
  }))
}

export default fp(discovery, { name: 'discovery', fastify: '5.x', dependencies: ['config'] })
