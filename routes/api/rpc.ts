import type { FastifyInstance, FastifyRequest, onRequestHookHandler } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { BadRequest, BadUpstreamResponse, RpcFault, codeOf, errorBody, type ErrorCode } from '../../lib/errors.js'
import { MulticallShapeError, multicallParams, multicallResults, type BatchCall } from '../../lib/discovery.js'
import { encodeCall, type JsonValue } from '../../lib/xmlrpc.js'
import type { Session } from '../../lib/sessions.js'

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

const BatchReply = Type.Object({ results: Type.Array(Type.Unknown()) })

/** One entry of a batch's answer (CONTRACT §3). */
type BatchResult = { result: JsonValue } | { error: { statusCode: number, code: ErrorCode, message: string, faultCode?: number } }

function errorEntry (code: ErrorCode, message: string, faultCode?: number): BatchResult {
  const { statusCode } = errorBody(code, message)
  return { error: { statusCode, code, message, ...(faultCode !== undefined ? { faultCode } : {}) } }
}

// Errors of one call that leave the session and the batch able to go on; any other error (the
// session lost, busy, timed out, the legacy server unreachable, shutdown) answers the whole request.
const PER_CALL: ReadonlySet<ErrorCode> = new Set(['RPC_FAULT', 'BAD_UPSTREAM_RESPONSE'])

export default async function rpcRoute (fastify: FastifyInstance): Promise<void> {
  const routes = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const config = fastify.config
  const policy = fastify.policy
  const sessions = fastify.sessions

  /**
   * Before the body is read: a refused method costs nothing more, and nothing reaches the legacy
   * server. A name that is not a method name at all is left to the schema (400).
   */
  function judgeMethod (request: FastifyRequest): void {
    const method = (request.params as { '*': string })['*']
    if (fastify.auditing) request.auditCall = { kind: 'rpc', user: request.getSession().user, method }
    if (!METHOD_NAME_RE.test(method)) return
    const refusal = policy.methodRefusal(method)
    if (refusal !== undefined) throw policy.refuse('rpc', refusal)
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
    const result = await sessions.call(session, method, params)
    return { result }
  })

  const BatchBody = Type.Object({
    calls: Type.Array(Type.Object({
      method: Type.String({ pattern: METHOD_NAME }),
      params: Type.Optional(Type.Array(Type.Unknown()))
    }), { minItems: 1, maxItems: config.rpcBatchMax })
  })

  /** The calls one by one on the session's socket; a fault does not stop the rest. */
  async function oneByOne (session: Session, calls: readonly BatchCall[]): Promise<BatchResult[]> {
    const out: BatchResult[] = []
    for (const call of calls) {
      try {
        out.push({ result: await sessions.call(session, call.method, call.params) })
      } catch (err) {
        if (err instanceof RpcFault) {
          out.push(errorEntry('RPC_FAULT', err.message, err.faultCode))
          continue
        }
        const code = codeOf(err)
        if (code !== undefined && PER_CALL.has(code)) {
          out.push(errorEntry(code, (err as Error).message))
          continue
        }
        throw err
      }
    }
    return out
  }

  /** The calls as one system.multicall; null when the server turns out not to have it (auto). */
  async function asMulticall (session: Session, calls: readonly BatchCall[]): Promise<BatchResult[] | null> {
    const discovery = fastify.discovery
    let answer: JsonValue
    try {
      answer = await sessions.call(session, 'system.multicall', multicallParams(calls))
    } catch (err) {
      // The multicall itself faulted: none of its calls ran. In auto mode the server is taken not
      // to have it from now on, and this batch goes call by call.
      if (err instanceof RpcFault && config.legacyMulticall === 'auto') {
        discovery.multicall = false
        return null
      }
      if (err instanceof RpcFault) throw new BadUpstreamResponse(`system.multicall failed: ${err.message} (fault ${err.faultCode})`, { cause: err })
      throw err
    }
    let items
    try {
      items = multicallResults(answer, calls.length)
    } catch (err) {
      if (err instanceof MulticallShapeError) throw new BadUpstreamResponse(err.message, { cause: err })
      throw err
    }
    if (config.legacyMulticall === 'auto') discovery.multicall = true
    return items.map(item => 'value' in item ? { result: item.value } : errorEntry('RPC_FAULT', item.faultString, item.faultCode))
  }

  routes.post('/api/rpc', {
    onRequest: fastify.requireSession,
    schema: { body: BatchBody, response: { 200: BatchReply } },
    config: { upstream: true }
  }, async (request) => {
    const session = request.getSession()
    const calls = request.body.calls.map(c => ({ method: c.method, params: c.params ?? [] }))
    if (fastify.auditing) request.auditCall = { kind: 'batch', user: session.user, method: calls.map(c => c.method).join(',') }
    // Params that cannot be written as XML-RPC make the batch malformed before any call runs.
    calls.forEach((call, i) => {
      try {
        encodeCall(call.method, call.params)
      } catch (err) {
        throw new BadRequest(`calls[${i}] params cannot be sent as XML-RPC: ${(err as Error).message}`, { cause: err })
      }
    })
    const results: Array<BatchResult | undefined> = calls.map((call) => {
      const refusal = policy.methodRefusal(call.method)
      if (refusal === undefined) return undefined
      const refused = policy.refuse('rpc', refusal)
      return errorEntry('FORBIDDEN', refused.message)
    })
    const allowed = calls.filter((_c, i) => results[i] === undefined)
    if (allowed.length > 0) {
      const mode = config.legacyMulticall
      const multicall = mode === 'true' || (mode === 'auto' && fastify.discovery.multicall !== false)
      const answered = (multicall ? await asMulticall(session, allowed) : null) ?? await oneByOne(session, allowed)
      let next = 0
      for (let i = 0; i < results.length; i++) {
        if (results[i] === undefined) results[i] = answered[next++]
      }
    }
    return { results: results as BatchResult[] }
  })
}
