import { test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { build, cookieHeader, JSON_HEADERS } from '../helper.js'

// plugins/lifecycle.ts lets a route through during shutdown by its configuration, not its URL.
test('while shutting down: routes with config.duringShutdown answer (/healthz in any form), the others 503 SHUTTING_DOWN', async (t) => {
  const { app, url } = await build(t, {
    listen: true,
    plugin: async (fastify) => {
      fastify.get('/test/alive', { config: { duringShutdown: true } }, async () => ({ alive: true }))
    }
  })
  const res = await fetch(`${url}/api/login`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ username: 'alice', password: 'alice' }) })
  const cookie = cookieHeader(res)
  // A call in flight holds the drain open while the others are asked.
  const inFlight = fetch(`${url}/api/rpc/sleep`, { method: 'POST', headers: { ...JSON_HEADERS, cookie }, body: '[400]' })
  await sleep(50)
  const closing = app.close()
  await sleep(50)

  for (const [method, path] of [['GET', '/healthz'], ['HEAD', '/healthz'], ['GET', '/healthz?probe=1'], ['GET', '/test/alive']]) {
    t.equal((await fetch(`${url}${path}`, { method })).status, 200, `${method} ${path} answers`)
  }
  for (const path of ['/api/session', '/readyz', '/metrics', '/nothing']) {
    const refused = await fetch(`${url}${path}`, { headers: { cookie } })
    t.equal(refused.status, 503, `${path} is refused`)
    const body = await refused.json() as Record<string, unknown>
    t.equal(body.code, 'SHUTTING_DOWN')
    t.same(Object.keys(body).sort(), ['code', 'error', 'message', 'statusCode'], 'the whole error body')
  }
  t.equal((await inFlight).status, 200)
  await closing
})
