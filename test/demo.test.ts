import { test } from 'tap'
import { startGateway } from './gateway-process.js'
import { loadConfig } from '../lib/config.js'
import { startDemo } from '../lib/demo.js'
import { build, JSON_HEADERS, login, rpc } from './helper.js'

// `npm start` on a fresh clone: no LEGACY_URL, so the built-in simulator plays the legacy system.
test('demo mode: the simulator starts, demo/demo logs in and calls, SIGTERM exits 0', async (t) => {
  const gw = await startGateway(t, {})
  t.ok(gw.logs.some(l => typeof l.msg === 'string' && l.msg.startsWith('DEMO MODE')), 'the log says demo mode')
  const health = await fetch(`${gw.url}/healthz`)
  t.equal(health.status, 200)
  const login = await fetch(`${gw.url}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"username":"demo","password":"demo"}' })
  t.equal(login.status, 200)
  const body = await login.json() as { user: string }
  t.equal(body.user, 'demo')
  const cookie = login.headers.getSetCookie().map(c => c.split(';')[0]).join('; ')
  t.notMatch(login.headers.getSetCookie()[0] ?? '', /Secure/, 'COOKIE_SECURE is false in demo mode')
  const call = await fetch(`${gw.url}/api/rpc/whoami`, { method: 'POST', headers: { 'content-type': 'application/json', cookie }, body: '[]' })
  t.equal(call.status, 200)
  t.equal((await call.json() as { result: { user: string } }).result.user, 'demo')
  gw.child.kill('SIGTERM')
  t.equal(await gw.exited, 0)
})

// The same part of server.ts (lib/demo.ts), without a process: what a test of demo mode builds.
test('demo mode in-process: the configuration points at the simulator, demo/demo logs in', async (t) => {
  const { app, sim, config } = await build(t, { demo: true })
  t.equal(config.demo, true)
  t.equal(config.legacyUrl.href, sim.rpcUrl, 'the legacy system is the demo simulator')
  t.same(config.alarmUrl, { host: '127.0.0.1', port: Number(new URL(sim.alarmUrl).port) }, 'and so is the alarm server')
  t.equal(config.cookieSecure, false, 'COOKIE_SECURE is false in demo mode')
  t.equal(config.consoleEnabled, true, 'the console is on in demo mode')

  const res = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'demo', password: 'demo' } })
  t.equal(res.statusCode, 200)
  t.equal(res.json().user, 'demo')
  const cookie = await login(app, 'demo')
  const call = await rpc(app, cookie, 'whoami')
  t.equal(call.statusCode, 200)
  t.equal(call.json().result.user, 'demo')
  t.equal((await app.inject({ url: '/' })).statusCode, 200, 'the console is served')
})

test('startDemo keeps an ALARM_URL of its own', async (t) => {
  const demo = await startDemo(loadConfig({ LOG_LEVEL: 'silent', ALARM_URL: 'udp://10.0.0.5:9001' }))
  t.teardown(() => demo.simulator.close())
  t.same(demo.config.alarmUrl, { host: '10.0.0.5', port: 9001 })
  t.equal(demo.config.legacyUrl.href, demo.simulator.rpcUrl)
})
