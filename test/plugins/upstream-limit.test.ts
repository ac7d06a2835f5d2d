import { test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { build, login, rpc, cookieHeader, JSON_HEADERS } from '../helper.js'

test('beyond UPSTREAM_MAX_CONCURRENT: 503 UPSTREAM_UNAVAILABLE with Retry-After, over all sessions', async (t) => {
  const { app, sim } = await build(t, { env: { UPSTREAM_MAX_CONCURRENT: '2' } })
  const alice = await login(app, 'alice')
  const bob = await login(app, 'bob')
  const carol = await login(app, 'carol')
  const slow = [rpc(app, alice, 'sleep', [300]), rpc(app, bob, 'sleep', [300])]
  await sleep(50)
  t.equal(app.upstreamLimit.inFlight, 2)

  const refused = await rpc(app, carol, 'whoami')
  t.equal(refused.statusCode, 503)
  t.equal(refused.json().code, 'UPSTREAM_UNAVAILABLE')
  t.same(Object.keys(refused.json()).sort(), ['code', 'error', 'message', 'statusCode'])
  t.equal(refused.headers['retry-after'], '1')
  const xml = await app.inject({ url: '/api/xml/xml/devices', headers: { cookie: carol } })
  t.equal(xml.statusCode, 503, 'the XML proxy shares the bound')
  t.equal(xml.json().code, 'UPSTREAM_UNAVAILABLE')
  t.equal(xml.headers['retry-after'], '1')
  t.equal(sim.ledger.filter(e => e.user === 'carol' && e.method !== 'login').length, 0, 'nothing reached the legacy server')

  t.equal((await app.inject({ url: '/api/session', headers: { cookie: carol } })).statusCode, 200, 'other routes are not bounded')
  for (const res of await Promise.all(slow)) t.equal(res.statusCode, 200)
  t.equal(app.upstreamLimit.inFlight, 0, 'every place is given back')
  t.equal(app.upstreamLimit.rejected, 2)
  t.equal((await rpc(app, carol, 'whoami')).statusCode, 200, 'and taken again')

  const metrics = (await app.inject({ url: '/metrics' })).body
  t.match(metrics, /^legacy_gateway_upstream_rejected_total 2$/m)
})

test('errors and unauthenticated requests give their place back', async (t) => {
  const { app } = await build(t, { env: { UPSTREAM_MAX_CONCURRENT: '1' } })
  const alice = await login(app, 'alice')
  t.equal((await rpc(app, alice, 'fault', [3, 'no'])).statusCode, 422)
  t.equal((await rpc(app, 'lg_sid=nope', 'whoami')).statusCode, 401)
  t.equal((await rpc(app, alice, 'bad method!')).statusCode, 400)
  t.equal((await app.inject({ method: 'POST', url: '/api/rpc/whoami', headers: { ...JSON_HEADERS, cookie: alice }, payload: '{' })).statusCode, 400)
  t.equal(app.upstreamLimit.inFlight, 0)
  t.equal((await rpc(app, alice, 'whoami')).statusCode, 200)
})

test('a browser that goes away mid-call gives its place back', async (t) => {
  const { app, url } = await build(t, { listen: true, env: { UPSTREAM_MAX_CONCURRENT: '1' } })
  const res = await fetch(`${url}/api/login`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ username: 'alice', password: 'alice' }) })
  const cookie = cookieHeader(res)
  const ac = new AbortController()
  const aborted = fetch(`${url}/api/rpc/sleep`, { method: 'POST', headers: { ...JSON_HEADERS, cookie }, body: '[300]', signal: ac.signal })
  await sleep(50)
  t.equal(app.upstreamLimit.inFlight, 1)
  ac.abort()
  await t.rejects(aborted)
  await sleep(50)
  t.equal(app.upstreamLimit.inFlight, 0, 'released when the connection closed, before the legacy answer')
  // The session's socket is still busy with the abandoned call; this one queues behind it.
  const next = await fetch(`${url}/api/rpc/whoami`, { method: 'POST', headers: { ...JSON_HEADERS, cookie }, body: '[]' })
  t.equal(next.status, 200)
})

// plugins/upstream-limit.ts counts a route by its configuration, not its URL.
test('a route takes part with config.upstream, whatever its URL; others are not bounded', async (t) => {
  let release = (): void => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  const { app } = await build(t, {
    env: { UPSTREAM_MAX_CONCURRENT: '1' },
    plugin: async (fastify) => {
      fastify.get('/test/bounded', { config: { upstream: true } }, async () => { await held; return { ok: true } })
      fastify.get('/test/free', async () => ({ ok: true }))
    }
  })
  const first = app.inject({ url: '/test/bounded' })
  await sleep(50)
  t.equal(app.upstreamLimit.inFlight, 1)
  const refused = await app.inject({ url: '/test/bounded' })
  t.equal(refused.statusCode, 503)
  t.equal(refused.json().code, 'UPSTREAM_UNAVAILABLE')
  t.equal((await app.inject({ url: '/test/free' })).statusCode, 200, 'a route without it is not bounded')
  release()
  t.equal((await first).statusCode, 200)
  t.equal(app.upstreamLimit.inFlight, 0)
})
