import type { FastifyInstance, FastifyRequest, onRequestHookHandler } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'

// CONTRACT §3: a method name outside [A-Za-z0-9_.:/-]{1,128} is 400 BAD_REQUEST.
const METHOD_NAME = '^[A-Za-z0-9_.:/-]{1,128}$'
const METHOD_NAME_RE = new RegExp(METHOD_NAME)
const RpcParams = Type.Object({
  '*': Type.String({ pattern: METHOD_NAME })
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

  const policy = fastify.policy

  /**
   * Before the body is read: a refused method costs nothing more, and nothing reaches the legacy
   * server. A name that is not a method name at all is left to the schema (400).
   */
  function judgeMethod (request: FastifyRequest): void {
    const method = (request.params as { '*': string })['*']
    if (fastify.auditing) request.auditCall = { kind: 'rpc', user: request.getSession().user, method }
    if (!METHOD_NAME_RE.test(method)) return
    const instead = reserved.get(method.toLowerCase())
    if (instead !== undefined) throw policy.refuse('rpc', `${method} is reserved to the gateway: ${instead}`)
    if (!policy.rpc.allows(method)) throw policy.refuse('rpc', `${method} may not be called through the gateway (RPC_ALLOW, RPC_DENY)`)
  }
  // A callback hook, not an async one: no promise and no microtask turn per call.
  const checkMethod: onRequestHookHandler = (request, _reply, done) => {
    let refused: Error | undefined
    try {
      judgeMethod(request)
    } catch (err) {
      refused = err as Error
    }
    done(refused)
  }

  routes.post('/api/rpc/*', {
    onRequest: [fastify.requireSession, checkMethod],
    schema: { params: RpcParams, body: RpcBody, response: { 200: RpcReply } },
    config: { upstream: true }
  }, async (request) => {
    const session = request.getSession()
    const method = request.params['*']
    const body = request.body
    // No body at all is a call without parameters.
    const params = body === undefined || body === null ? [] : Array.isArray(body) ? body : body.params
    const result = await fastify.sessions.call(session, method, params)
    return { result }
  })
}
