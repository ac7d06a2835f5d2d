import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { Catalogue } from '../../lib/discovery.js'
import type { JsonValue } from '../../lib/xmlrpc.js'

const MethodsReply = Type.Object({
  introspection: Type.Boolean(),
  methods: Type.Array(Type.Object({
    name: Type.String(),
    signatures: Type.Union([Type.Array(Type.Array(Type.String())), Type.Null()]),
    help: Type.Union([Type.String(), Type.Null()])
  }))
})

/**
 * GET /api/methods: the legacy methods the caller may call, as the legacy server describes them.
 * The catalogue is one per gateway (plugins/discovery.ts): filled on the first asker's pinned
 * socket, shared by every asker meanwhile, kept five minutes; the method policy then picks.
 */
export default async function methodsRoute (fastify: FastifyInstance): Promise<void> {
  const routes = fastify.withTypeProvider<TypeBoxTypeProvider>()

  routes.get('/api/methods', {
    onRequest: fastify.requireSession,
    schema: { response: { 200: MethodsReply } }
  }, async (request) => {
    const session = request.getSession()
    const catalogue = await fastify.discovery.catalogue((method: string, params: JsonValue[]) => fastify.sessions.call(session, method, params))
    return callable(fastify, catalogue)
  })
}

/** The catalogue as the policy lets browsers see it. */
export function callable (fastify: FastifyInstance, catalogue: Catalogue): Catalogue {
  return { ...catalogue, methods: catalogue.methods.filter(m => fastify.policy.methodRefusal(m.name) === undefined) }
}
