import { test } from 'tap'
import { startGateway } from './gateway-process.js'

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
