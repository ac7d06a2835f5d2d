import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'

// CONTRACT §3: a method name outside [A-Za-z0-9_.:/-]{1,128} is 400 BAD_REQUEST.
const RpcParams = Type.Object({
  '*': Type.String({ pattern: '^[A-Za-z0-9_.:/-]{1,128}$' })
})

const RpcBody = Type.Union([
  Type.Array(Type.Unknown()),
  Type.Object({ params: Type.Array(Type.Unknown()) }),
  // An empty body: a call without parameters.
  Type.Null()
])

const RpcReply = Type.Object({ result: Type.Unknown() })

export default async function rpcRoute (fastify: FastifyInstance): Promise<void> {
  fastify.post<{ Params: { '*': string }, Body: unknown[] | { params: unknown[] } | null | undefined }>('/api/rpc/*', {
    onRequest: fastify.requireSession,
    schema: { params: RpcParams, body: RpcBody, response: { 200: RpcReply } }
  }, async (request) => {
    const session = request.session
    if (session === null) throw new Error('requireSession did not run')
    const body = request.body
    // No body at all is a call without parameters.
    const params = body === undefined || body === null ? [] : Array.isArray(body) ? body : body.params
    const result = await fastify.sessions.call(session, request.params['*'], params)
    return { result }
  })
}
