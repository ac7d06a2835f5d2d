import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Discovery, type Catalogue } from '../lib/discovery.js'

declare module 'fastify' {
  interface FastifyInstance {
    discovery: Discovery & {
      /**
       * Whether batches travel as one system.multicall: LEGACY_MULTICALL=true/false, or in auto
       * mode what was learned (from the catalogue or a first attempt); undefined until then.
       */
      multicall: boolean | undefined
    }
  }
}

// A legacy server's methods change with its releases, not by the minute.
export const CATALOGUE_TTL_MS = 5 * 60_000
// Filling is bounded: details that are not in by then stay null.
export const CATALOGUE_FILL_MS = 10_000
export const CATALOGUE_MAX_METHODS = 2000

/** The legacy server's self-description, one per gateway (lib/discovery.ts). */
async function discovery (fastify: FastifyInstance): Promise<void> {
  const mode = fastify.config.legacyMulticall
  const base = new Discovery({ ttlMs: CATALOGUE_TTL_MS, fillMs: CATALOGUE_FILL_MS, maxMethods: CATALOGUE_MAX_METHODS })
  const service = Object.assign(base, { multicall: mode === 'auto' ? undefined : mode === 'true' })
  const catalogue = base.catalogue.bind(base)
  // In auto mode the catalogue says whether the server lists system.multicall.
  service.catalogue = async (call) => {
    const filled: Catalogue = await catalogue(call)
    if (mode === 'auto' && filled.introspection) service.multicall = filled.multicall
    return filled
  }
  fastify.decorate('discovery', service)
}

export default fp(discovery, { name: 'discovery', fastify: '5.x', dependencies: ['config'] })
