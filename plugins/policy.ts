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
  /**
   * Why a browser may not call `method` (a reserved method, or RPC_ALLOW/RPC_DENY), or undefined
   * when it may. Counts nothing: the caller refuses with `refuse`.
   */
  methodRefusal (method: string): string | undefined
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
  const config = fastify.config
  const refusals: Record<RefusalKind, number> = { rpc: 0, xml: 0 }
  // The gateway alone logs the pinned socket in and out: a browser calling login there would run
  // the socket as another user while the session still names the first, and logout would leave a
  // session on a socket logged in as nobody. system.multicall would run any method inside it, past
  // the method rules (batches use it, call by call under the rules). Legacy servers often match
  // method names case-insensitively, so this does too.
  const reserved = new Map([
    [config.legacyLoginMethod.toLowerCase(), 'log in with POST /api/login'],
    [config.legacyLogoutMethod.toLowerCase(), 'log out with POST /api/logout'],
    ['system.multicall', 'send a batch with POST /api/rpc']
  ])
  const rpcPolicy = config.rpcPolicy
  fastify.decorate('policy', {
    rpc: fastify.config.rpcPolicy,
    xml: fastify.config.xmlPolicy,
    refusals,
    refuse (kind: RefusalKind, message: string): Error {
      refusals[kind]++
      return new Forbidden(message)
    },
    methodRefusal (method: string): string | undefined {
      const instead = reserved.get(method.toLowerCase())
      if (instead !== undefined) return `${method} is reserved to the gateway: ${instead}`
      if (!rpcPolicy.allows(method)) return `${method} may not be called through the gateway (RPC_ALLOW, RPC_DENY)`
      return undefined
    }
  })
}

export default fp(policy, { name: 'policy', fastify: '5.x', dependencies: ['config'] })
