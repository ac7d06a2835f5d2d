import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Forbidden } from '../lib/errors.js'
import type { Policy } from '../lib/policy.js'

export type RefusalKind = 'rpc' | 'xml'

export interface PolicyService {
  /** RPC_ALLOW / RPC_DENY. */
  readonly rpc: Policy
  /** XML_ALLOW / XML_DENY. */
  readonly xml: Policy
  /** 403 FORBIDDEN refusals since start, by kind (the metrics read them; never a method name). */
  readonly refusals: Record<RefusalKind, number>
  /** Counts a refusal and returns the 403 to throw. */
  refuse (kind: RefusalKind, message: string): Error
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The method and path policy (lib/policy.ts), and what it refused. */
    policy: PolicyService
  }
}

/**
 * The method and path policy, compiled once at start (lib/config.ts). Routes ask it before
 * anything is sent; every 403 it gives, the gateway's own reserved methods and paths included,
 * is counted here.
 */
async function policy (fastify: FastifyInstance): Promise<void> {
  const refusals: Record<RefusalKind, number> = { rpc: 0, xml: 0 }
  fastify.decorate('policy', {
    rpc: fastify.config.rpcPolicy,
    xml: fastify.config.xmlPolicy,
    refusals,
    refuse (kind: RefusalKind, message: string): Error {
      refusals[kind]++
      return new Forbidden(message)
    }
  })
}

export default fp(policy, { name: 'policy', fastify: '5.x', dependencies: ['config'] })
