import { test } from 'tap'
import type { Test } from 'tap'
import { errorCodes, type FastifyError, type FastifyInstance } from 'fastify'
import { ERRORS, RpcFault, SessionBusy, UpstreamTimeout } from '../../lib/errors.js'
import { FASTIFY_CODES, toErrorBody } from '../../plugins/errors.js'
import { build, JSON_HEADERS } from '../helper.js'

interface Line { level: number, msg?: string, err?: { message?: string, stack?: string } }

/** An error as a plugin throws it: a message and perhaps a status, nothing of the table. */
function foreign (message: string, statusCode?: number): FastifyError {
  return Object.assign(new Error(message), { code: 'SOME_PLUGIN_ERROR', ...(statusCode === undefined ? {} : { statusCode }) })
}

/**
 * The gateway with a few routes that throw what no route of the gateway throws today, added
 * before it is ready (helper.build readies it at once). The log is kept.
 */
async function buildWithThrowers (t: Test): Promise<{ app: FastifyInstance, log: Line[] }> {
  const log: Line[] = []
  const { app } = await build(t, {
    logStream: { write: (line: string) => { log.push(JSON.parse(line) as Line) } },
    plugin: async (fastify) => {
      fastify.get('/test/method-not-allowed', async () => { throw foreign('DELETE only', 405) })
      fastify.get('/test/teapot', async () => { throw foreign('short and stout', 418) })
      fastify.get('/test/bug', async () => { throw new TypeError('secret internals at /srv/app.js:12') })
    }
  })
  return { app, log }
}

test('each Fastify error a request can cause keeps its status under a code of the table', async (t) => {
  const fastifyErrors: Record<string, unknown> = errorCodes
  for (const [fstCode, code] of FASTIFY_CODES) {
    const Ctor = fastifyErrors[fstCode]
    if (typeof Ctor !== 'function') {
      t.fail(`${fstCode} is not one of Fastify's error codes`)
      continue
    }
    const err: unknown = Reflect.construct(Ctor, ['x'])
    const status = (err as FastifyError).statusCode
    t.equal(status, ERRORS[code].status, `${fstCode} (${String(status)}) → ${code}`)
    const body = toErrorBody(err as FastifyError)
    t.equal(body.code, code)
    t.equal(body.statusCode, status)
  }
})

test('errors from elsewhere: a known 4xx gets its code, another 4xx BAD_REQUEST with its status, the rest INTERNAL_ERROR', async (t) => {
  t.strictSame(toErrorBody(foreign('nope', 405)), { statusCode: 405, code: 'METHOD_NOT_ALLOWED', error: 'Method Not Allowed', message: 'nope' })
  t.strictSame(toErrorBody(foreign('who?', 401)), { statusCode: 401, code: 'UNAUTHENTICATED', error: 'Unauthorized', message: 'who?' })
  t.strictSame(toErrorBody(foreign('slow down', 429)), { statusCode: 429, code: 'RATE_LIMITED', error: 'Too Many Requests', message: 'slow down' })
  t.strictSame(toErrorBody(foreign('long', 414)), { statusCode: 414, code: 'BAD_REQUEST', error: 'URI Too Long', message: 'long' })
  const internal = { statusCode: 500, code: 'INTERNAL_ERROR', error: 'Internal Server Error', message: 'Internal error' }
  t.strictSame(toErrorBody(foreign('ECONNRESET at socket.js:1')), internal, 'no status: a bug, and its message stays inside')
  t.strictSame(toErrorBody(foreign('upstream said no', 502)), internal, 'a 5xx of a plugin is not a contract code')
  t.strictSame(toErrorBody(foreign('redirect?', 302)), internal)
})

test('the gateway\'s own errors are answered as thrown; RPC_FAULT with its faultCode, read from the class', async (t) => {
  t.strictSame(toErrorBody(new SessionBusy(3)), { statusCode: 429, code: 'SESSION_BUSY', error: 'Too Many Requests', message: 'Too many calls are waiting on this session (limit 3): retry later' })
  t.strictSame(toErrorBody(new UpstreamTimeout(30000)), { statusCode: 504, code: 'UPSTREAM_TIMEOUT', error: 'Gateway Timeout', message: 'The legacy server did not answer within 30000 ms; the session is closed' })
  t.strictSame(toErrorBody(new RpcFault(7, 'valve stuck')), { statusCode: 422, code: 'RPC_FAULT', error: 'Unprocessable Entity', message: 'valve stuck', faultCode: 7 })
  t.strictSame(toErrorBody(new RpcFault(0, '')), { statusCode: 422, code: 'RPC_FAULT', error: 'Unprocessable Entity', message: '', faultCode: 0 })
  // An error that only says RPC_FAULT is not one (no RpcFault made it): a 4xx from elsewhere.
  const lookalike = Object.assign(new Error('x'), { code: 'RPC_FAULT', statusCode: 422, faultCode: 9 })
  t.strictSame(toErrorBody(lookalike), { statusCode: 422, code: 'BAD_REQUEST', error: 'Unprocessable Entity', message: 'x' })
})

test('through the app: 405 is METHOD_NOT_ALLOWED, a wrong method on a known path is 404, a bug is 500 INTERNAL_ERROR', async (t) => {
  const { app, log } = await buildWithThrowers(t)

  const res405 = await app.inject({ url: '/test/method-not-allowed' })
  t.equal(res405.statusCode, 405)
  t.match(res405.headers['content-type'], /^application\/json/)
  t.strictSame(res405.json(), { statusCode: 405, code: 'METHOD_NOT_ALLOWED', error: 'Method Not Allowed', message: 'DELETE only' })

  // Fastify answers a method a path lacks 404 (the router has no notion of 405), so does the gateway.
  for (const [method, url] of [['GET', '/api/login'], ['DELETE', '/api/session'], ['POST', '/healthz'], ['PUT', '/ws/alarms']] as const) {
    const res = await app.inject({ method, url, headers: JSON_HEADERS, payload: method === 'GET' ? undefined : '{}' })
    t.equal(res.statusCode, 404, `${method} ${url}: 404`)
    t.strictSame(res.json(), { statusCode: 404, code: 'NOT_FOUND', error: 'Not Found', message: `Route ${method} ${url} not found` })
  }

  const teapot = await app.inject({ url: '/test/teapot' })
  t.strictSame(teapot.json(), { statusCode: 418, code: 'BAD_REQUEST', error: "I'm a Teapot", message: 'short and stout' })

  const bug = await app.inject({ url: '/test/bug' })
  t.equal(bug.statusCode, 500)
  t.strictSame(bug.json(), { statusCode: 500, code: 'INTERNAL_ERROR', error: 'Internal Server Error', message: 'Internal error' })
  t.notMatch(bug.body, /secret|srv/, 'nothing of the error reaches the browser')
  const line = log.find(l => l.msg === 'unhandled error')
  t.equal(line?.level, 50, 'a bug is logged at error level')
  t.match(line?.err?.message, /secret internals/, 'with the error itself')
  t.notOk(log.some(l => l.level >= 50 && l.msg !== 'unhandled error'), 'nothing else at error level')
})

test('through the app: what Fastify refuses before a route runs is answered from the table', async (t) => {
  const { app } = await buildWithThrowers(t)
  const badUrl = await app.inject({ url: '/api/xml/%zz' })
  t.strictSame(badUrl.json(), { statusCode: 400, code: 'BAD_REQUEST', error: 'Bad Request', message: "'/api/xml/%zz' is not a valid url component" }, 'a path the router cannot decode (frameworkErrors)')
  const query = await app.inject({ method: 'QUERY', url: '/api/login' })
  t.equal(query.statusCode, 400)
  t.equal(query.json().code, 'BAD_REQUEST', 'QUERY without a Content-Type')
  const length = await app.inject({ method: 'POST', url: '/api/login', headers: { ...JSON_HEADERS, 'content-length': '99' }, payload: '{}' })
  t.equal(length.statusCode, 400)
  t.equal(length.json().code, 'BAD_REQUEST', 'a body shorter than its Content-Length')
  const media = await app.inject({ method: 'POST', url: '/api/login', headers: { 'content-type': 'text/plain' }, payload: '{}' })
  t.equal(media.statusCode, 415)
  t.equal(media.json().code, 'UNSUPPORTED_MEDIA_TYPE', 'a Content-Type no parser takes')
})
