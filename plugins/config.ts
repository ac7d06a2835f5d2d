import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { AppConfig } from '../lib/config.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The resolved configuration (lib/config.ts): read once at start, never changed. */
    config: AppConfig
  }
}

async function config (fastify: FastifyInstance, opts: { config: AppConfig }): Promise<void> {
  fastify.decorate('config', opts.config)
}

export default fp(config, { name: 'config', fastify: '5.x' })
