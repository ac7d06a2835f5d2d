import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { Forbidden } from '../../lib/errors.js'

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
  const routes = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const config = fastify.config
  // The gateway alone logs the pinned socket in and out: a browser calling login there would run
  // the socket as another user while the session still names the first, and logout would leave a
  // session on a socket logged in as nobody. system.multicall would run any method inside it, past
  // the method rules. Legacy servers often match method names case-insensitively, so this does too.
  const reserved = new Map([
    [config.legacyLoginMethod.toLowerCase(), 'log in with POST /api/login'],
    [config.legacyLogoutMethod.toLowerCase(), 'log out with POST /api/logout'],
    ['system.multicall', 'call the methods one by one']
  ])

  routes.post('/api/rpc/*', {
    onRequest: fastify.requireSession,
    schema: { params: RpcParams, body: RpcBody, response: { 200: RpcReply } },
    config: { upstream: true }
  }, async (request) => {
    const session = request.getSession()
    const method = request.params['*']
    const instead = reserved.get(method.toLowerCase())
    if (instead !== undefined) throw new Forbidden(`${method} is reserved to the gateway: ${instead}`)
    const body = request.body
    // No body at all is a call without parameters.
    const params = body === undefined || body === null ? [] : Array.isArray(body) ? body : body.params
    const result = await fastify.sessions.call(session, method, params)
    return { result }
  })
}
