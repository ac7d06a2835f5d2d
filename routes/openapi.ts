import type { FastifyInstance, FastifyRequest } from 'fastify'
import swaggerUi from '@fastify/swagger-ui'
import { withLegacyMethods } from '../lib/openapi.js'
import { callable } from './api/methods.js'
import type { JsonValue } from '../lib/xmlrpc.js'
import { SESSION_COOKIE } from '../plugins/sessions.js'

/**
 * GET /openapi.json: the gateway's own routes (OpenAPI 3.1, from their schemas by
 * @fastify/swagger, registered in app.ts before the routes). GET /api/openapi.json, with a
 * session: plus one operation per legacy method the caller may call. In console mode, /docs
 * renders it with Swagger UI, served from the package (no CDN).
 */
export default async function openapiRoutes (fastify: FastifyInstance): Promise<void> {
  fastify.get('/openapi.json', { schema: { hide: true } }, async () => fastify.swagger())

  fastify.get('/api/openapi.json', { onRequest: fastify.requireSession, schema: { hide: true } }, async (request) => {
    const session = request.getSession()
    const catalogue = await fastify.discovery.catalogue((method: string, params: JsonValue[]) => fastify.sessions.call(session, method, params))
    return withLegacyMethods(fastify.swagger() as unknown as Record<string, unknown>, callable(fastify, catalogue))
  })

  if (!fastify.config.consoleEnabled) return
  await fastify.register(swaggerUi, {
    routePrefix: '/docs',
    staticCSP: true,
    // With a session and a filled catalogue, the page shows the legacy methods too (synchronous:
    // it never asks the legacy server; GET /api/methods or /api/openapi.json fills the catalogue).
    transformSpecification: (doc: Readonly<Record<string, unknown>>, request: FastifyRequest) => {
      const catalogue = fastify.discovery.peek()
      const session = request.cookies[SESSION_COOKIE] !== undefined ? fastify.sessions.get(request.cookies[SESSION_COOKIE]) : undefined
      return catalogue !== undefined && session !== undefined ? withLegacyMethods(doc, callable(fastify, catalogue)) : doc
    }
  })
}
