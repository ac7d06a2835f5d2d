import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Forbidden } from '../lib/errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The origin rules that the write guard below and the alarm WebSocket's upgrade share. */
    origins: Origins
  }
}

export interface Origins {
  /**
   * The gateway's own origin as the browser addressed it: the scheme and `Host`, which behind a
   * proxy come from `X-Forwarded-Proto` and `X-Forwarded-Host` when TRUST_PROXY trusts it.
   */
  own: (request: FastifyRequest) => string
  /** Whether ALLOWED_ORIGINS names `origin`, or is `*`. */
  listed: (origin: string) => boolean
}

/**
 * Cross-origin writes. SameSite=Strict keeps the session cookie from other sites, but not from a
 * sibling subdomain (same site), and a bodyless POST (`fetch` with `mode: 'no-cors'`,
 * `navigator.sendBeacon`) has no Content-Type for the JSON-only rule to refuse: such a page could
 * log the user out or call a method without parameters. So every request that may change state
 * (any method but GET and HEAD, on every route) is judged before its body is read and before its
 * session is looked up: a browser that says it is cross-site or same-site (Fetch Metadata), or an
 * Origin that is neither the gateway's own nor listed, is 403 FORBIDDEN. A request with neither
 * header is not a browser's (curl, a server) and passes to the usual checks.
 */
async function origins (fastify: FastifyInstance): Promise<void> {
  const allowed = fastify.config.allowedOrigins
  const any = allowed?.includes('*') === true
  const listed = new Set(allowed ?? [])

  const policy: Origins = {
    own: (request) => `${request.protocol}://${request.host}`,
    listed: (origin) => any || listed.has(origin)
  }
  fastify.decorate('origins', policy)

  // A callback hook (every request passes here): no promise and no microtask turn per request.
  fastify.addHook('onRequest', (request, _reply, done) => {
    done(refusal(request))
  })

  /** Why the request may not change state here, or undefined when it may. */
  function refusal (request: FastifyRequest): InstanceType<typeof Forbidden> | undefined {
    const method = request.method
    if (method === 'GET' || method === 'HEAD') return undefined
    const site = request.headers['sec-fetch-site']
    if (site !== undefined && site !== 'same-origin' && site !== 'none') return new Forbidden(siteRefusal(site))
    const origin = request.headers.origin
    if (origin === undefined || policy.listed(origin)) return undefined
    const own = policy.own(request)
    if (origin === own) return undefined
    return new Forbidden(origin === 'null'
      ? 'Origin null (a sandboxed frame, a local file, a cross-origin redirect) is not the gateway\'s own: it may not send requests that change state'
      : `Origin ${origin} is neither the gateway's own (${own}) nor in ALLOWED_ORIGINS: it may not send requests that change state`)
  }
}

function siteRefusal (site: string | string[]): string {
  const rule = 'only pages of the gateway\'s own origin may send requests that change state'
  if (site === 'cross-site') return `The browser sent this request from another site (Sec-Fetch-Site: cross-site): ${rule}`
  if (site === 'same-site') return `The browser sent this request from another origin of the same site (Sec-Fetch-Site: same-site): ${rule}`
  // Browsers send one of four values; anything else is refused rather than guessed at.
  return `Sec-Fetch-Site ${JSON.stringify(site)} is not a value browsers send: ${rule}`
}

export default fp(origins, { name: 'origins', fastify: '5.x', dependencies: ['config', 'errors'] })
