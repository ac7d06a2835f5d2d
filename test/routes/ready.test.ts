import { test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { build, startSimulator } from '../helper.js'

async function waitForStatus (app: FastifyInstance, status: number, timeoutMs = 3000): Promise<LightMyRequestResponse> {
  const until = Date.now() + timeoutMs
  for (;;) {
    const res = await app.inject({ url: '/readyz' })
    if (res.statusCode === status || Date.now() > until) return res
    await sleep(20)
  }
}

test('ready at startup: the first probe runs before the app is ready', async (t) => {
  const { app } = await build(t)
  const res = await app.inject({ url: '/readyz' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ready', checks: { legacy: 'ok', alarms: 'disabled', draining: 'ok' } })
  t.equal(res.headers['cache-control'], 'no-store')
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, '/healthz is unchanged')
})

test('readiness flips to 503 naming legacy when the simulator stops, and back when it returns', async (t) => {
  const { app, sim } = await build(t, { env: { READY_PROBE_MS: '50' } })
  t.equal((await app.inject({ url: '/readyz' })).statusCode, 200)
  await sim.stop()
  const down = await waitForStatus(app, 503)
  t.equal(down.statusCode, 503)
  t.same(down.json(), { status: 'not ready', checks: { legacy: 'unreachable (ECONNREFUSED)', alarms: 'disabled', draining: 'ok' }, failing: ['legacy'] })
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, 'still alive')
  await sim.start()
  const up = await waitForStatus(app, 200)
  t.equal(up.statusCode, 200)
  t.same(up.json(), { status: 'ready', checks: { legacy: 'ok', alarms: 'disabled', draining: 'ok' } })
})

test('the probe is cached: requests to /readyz open no legacy connections', async (t) => {
  const sim = await startSimulator(t)
  const { app } = await build(t, { sim, env: { READY_PROBE_MS: '60000' } })
  await sleep(50)
  const closedBefore = sim.socketsClosed()
  const statuses = new Set<number>()
  for (let i = 0; i < 50; i++) statuses.add((await app.inject({ url: '/readyz' })).statusCode)
  t.same([...statuses], [200])
  await sleep(50)
  t.equal(sim.socketsClosed(), closedBefore, 'no probe per request')
  t.equal(sim.sockets().length, 0, 'and the startup probe closed its socket')
})

test('a legacy server down at startup: not ready from the first request', async (t) => {
  const sim = await startSimulator(t)
  await sim.stop()
  const { app } = await build(t, { sim, env: { READY_PROBE_MS: '50' } })
  const res = await app.inject({ url: '/readyz' })
  t.equal(res.statusCode, 503)
  t.same(res.json().failing, ['legacy'])
  await sim.start()
  t.equal((await waitForStatus(app, 200)).statusCode, 200)
})

test('alarms check: ok with a live feed, failing when its subscribe cannot go out', async (t) => {
  const sim = await startSimulator(t)
  const { app } = await build(t, { sim, env: { ALARM_URL: sim.alarmUrl } })
  const res = await app.inject({ url: '/readyz' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ready', checks: { legacy: 'ok', alarms: 'ok', draining: 'ok' } })

  // An alarm server name that does not resolve: the subscribe fails, the feed says why.
  const broken = await build(t, { sim, env: { ALARM_URL: 'udp://alarm-server.invalid:9001' } })
  const bad = await broken.app.inject({ url: '/readyz' })
  t.equal(bad.statusCode, 503)
  t.same(bad.json().failing, ['alarms'])
  t.equal(bad.json().checks.legacy, 'ok')
  t.match(bad.json().checks.alarms, /^subscribe failed/)
})

test('503 while shutting down', async (t) => {
  const { app, url } = await build(t, { listen: true })
  const cookieRes = await fetch(`${url}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'alice', password: 'alice' }) })
  const cookie = cookieRes.headers.getSetCookie().map(c => c.split(';')[0]).join('; ')
  // A call in flight holds the drain open while /readyz is asked.
  const inFlight = fetch(`${url}/api/rpc/sleep`, { method: 'POST', headers: { 'content-type': 'application/json', cookie }, body: '[400]' })
  await sleep(50)
  const closing = app.close()
  await sleep(50)
  const res = await fetch(`${url}/readyz`)
  t.equal(res.status, 503)
  t.equal((await res.json() as { code: string }).code, 'SHUTTING_DOWN')
  t.equal((await inFlight).status, 200)
  await closing
})
