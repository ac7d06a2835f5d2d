import { test } from 'tap'
import { build, login, startSimulator } from '../helper.js'

test('GET /openapi.json describes the gateway\'s own routes, OpenAPI 3.1, from their schemas', async (t) => {
  const { app, sim } = await build(t)
  sim.clearLedger()
  const res = await app.inject({ url: '/openapi.json' })
  t.equal(res.statusCode, 200)
  const doc = res.json()
  t.equal(doc.openapi, '3.1.0')
  for (const path of ['/api/login', '/api/logout', '/api/session', '/api/methods', '/api/rpc']) t.ok(path in doc.paths, `${path} is described`)
  t.match(doc.paths['/api/login'].post.requestBody.content['application/json'].schema, { required: ['username', 'password'] })
  t.match(doc.paths['/api/rpc'].post.requestBody.content['application/json'].schema.properties.calls, { type: 'array', minItems: 1, maxItems: 64 })
  t.notOk(Object.keys(doc.paths).some(p => p.startsWith('/api/rpc/') && p !== '/api/rpc/{*}'), 'no legacy method without a session')
  t.notOk('/openapi.json' in doc.paths)
  t.same(sim.ledger, [], 'it asks nothing of the legacy server')
})

test('GET /api/openapi.json adds one operation per allowed legacy method, typed from methodSignature', async (t) => {
  const { app } = await build(t, { env: { RPC_DENY: 'sleep' } })
  t.equal((await app.inject({ url: '/api/openapi.json' })).statusCode, 401)
  const cookie = await login(app, 'alice')
  const res = await app.inject({ url: '/api/openapi.json', headers: { cookie } })
  t.equal(res.statusCode, 200)
  const doc = res.json()
  t.equal(doc.openapi, '3.1.0')
  const fault = doc.paths['/api/rpc/fault']?.post
  t.match(fault, { operationId: 'legacy:fault', summary: 'Always answers a fault with the given code and string.' })
  t.same(fault.requestBody.content['application/json'].schema, { type: 'array', prefixItems: [{ type: 'integer' }, { type: 'string' }], minItems: 2, maxItems: 2 })
  t.same(fault.responses['200'].content['application/json'].schema.properties.result, { type: 'object' })
  t.same(doc.paths['/api/rpc/echo'].post.requestBody.content['application/json'].schema, { type: 'array' }, 'no signature: any params')
  t.notOk('/api/rpc/sleep' in doc.paths, 'a denied method is not described')
  t.notOk('/api/rpc/login' in doc.paths, 'nor a reserved one')
  t.ok('/api/login' in doc.paths, 'the gateway\'s own routes are still there')
})

test('the docs page renders it in console mode, from the package (no CDN); off otherwise', async (t) => {
  const sim = await startSimulator(t)
  const on = await build(t, { sim, env: { CONSOLE_ENABLED: 'true' } })
  const page = await on.app.inject({ url: '/docs/' })
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /text\/html/)
  t.notMatch(page.body, /https?:\/\/(?!127\.0\.0\.1)[a-z]/i, 'nothing loaded from elsewhere')
  t.equal((await on.app.inject({ url: '/docs/json' })).json().openapi, '3.1.0')
  const off = await build(t, { sim })
  t.equal((await off.app.inject({ url: '/docs/' })).statusCode, 404)
})
