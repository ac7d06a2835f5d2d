import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../lib/config.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

async function config (fastify: FastifyInstance, opts: { config: Config }): Promise<void> {
  fastify.decorate('config', opts.config)
}

export default fp(config, { name: 'config', fastify: '5.x' })
