// The browser client (client/legacy-gateway.ts) against the real gateway and simulator, in Node:
// a small cookie jar plays the browser's cookie store for fetch and for `ws`.
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { createClient, GatewayError } from '../../client/legacy-gateway.js'
import { build, startSimulator } from '../helper.js'
import { FakeTimers, recorder, until } from './fake-gateway.js'

/** fetch with a cookie jar, and a WebSocket class that sends the jar's cookies. */
function browserLike (origin: string): { fetch: typeof fetch, WebSocket: typeof globalThis.WebSocket, cookies: Map<string, string> } {
  const cookies = new Map<string, string>()
  const header = (): string => [...cookies].map(([name, value]) => `${name}=${value}`).join('; ')
  const jarFetch: typeof fetch = async (input, init) => {
    const headers = new Headers(init?.headers)
    if (cookies.size > 0) headers.set('cookie', header())
    const res = await fetch(input, { ...init, headers })
    for (const line of res.headers.getSetCookie()) {
      const [pair = ''] = line.split(';')
      const at = pair.indexOf('=')
      const name = pair.slice(0, at)
      const value = pair.slice(at + 1)
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(line) || /max-age=0\b/i.test(line)) cookies.delete(name)
      else cookies.set(name, value)
    }
    return res
  }
  class CookieWebSocket extends WebSocket {
    constructor (url: string) {
      super(url, { headers: { cookie: header() }, origin })
    }
  }
  return { fetch: jarFetch, WebSocket: CookieWebSocket as unknown as typeof globalThis.WebSocket, cookies }
}

async function rejects (t: Test, promise: Promise<unknown>, expected: Record<string, unknown>, what: string): Promise<GatewayError> {
  try {
    await promise
  } catch (err) {
    t.ok(err instanceof GatewayError, `${what}: a GatewayError`)
    t.match(err, expected, what)
    return err as GatewayError
  }
  t.fail(`${what}: did not throw`)
  throw new Error('unreachable')
}

t.test('login, call, faults, session, xml, logout through the real gateway', async (t) => {
  const { url, sim } = await build(t, { listen: true })
  const browser = browserLike(url)
  const gw = createClient({ baseUrl: url, fetch: browser.fetch, WebSocket: browser.WebSocket })

  await rejects(t, gw.call('whoami'), { status: 401, code: 'UNAUTHENTICATED' }, 'a call before login')
  await rejects(t, gw.login('demo', 'wrong'), { status: 401, code: 'LOGIN_FAILED' }, 'a wrong password')

  t.match(await gw.login('demo', 'demo'), { user: 'demo', result: { user: 'demo' } })
  t.ok(browser.cookies.has('lg_sid'), 'the session cookie is kept')
  t.match(await gw.call('whoami'), { user: 'demo' })
  const params = [1, 'two', null, true, [3.5], { k: '  007  ' }]
  t.same(await gw.call('echo', ...params), params, 'params and result round-trip as JSON')

  const fault = await rejects(t, gw.call('fault', 42, 'pump on fire'), { status: 422, code: 'RPC_FAULT', faultCode: 42, message: 'pump on fire' }, 'a legacy fault')
  t.equal(fault.sessionEnded, false)
  await rejects(t, gw.call('no such method!'), { status: 400, code: 'BAD_REQUEST' }, 'a bad method name')

  t.match(await gw.session(), { user: 'demo', connected: true, createdAt: String, lastActivityAt: String })

  const { introspection, methods } = await gw.methods()
  t.equal(introspection, true)
  t.match(methods.find(m => m.name === 'sleep'), { signatures: [['int', 'int']], help: /milliseconds/ }, 'methods(): the legacy server\'s own description')
  t.same(await gw.batch([{ method: 'echo', params: [1] }, { method: 'fault', params: [5, 'no'] }, { method: 'whoami' }]), [
    { result: [1] },
    { error: { statusCode: 422, code: 'RPC_FAULT', message: 'no', faultCode: 5 } },
    { result: { user: 'demo', socket: (await gw.call<{ socket: number }>('whoami')).socket } }
  ], 'batch(): results in order, a fault in its place')
  await rejects(t, gw.batch([]), { status: 400, code: 'BAD_REQUEST' }, 'an empty batch')

  const devices = await gw.xml<{ devices: { '@count': string, device: unknown[] } }>('xml/devices')
  t.equal(devices.devices['@count'], '2')
  t.equal(devices.devices.device.length, 2)
  const raw = await gw.xml<string>('/xml/devices', { accept: 'text/xml' })
  t.match(raw, /^<\?xml[^>]*>\s*<devices count="2">/, 'Accept: text/xml passes the legacy bytes through')
  t.match(await gw.xml('xml/echo', { method: 'POST', body: { order: { item: 'valve' } } }), { echo: { method: 'POST', body: /<order><item>valve<\/item><\/order>/ } }, 'a JSON body goes out as XML')
  await rejects(t, gw.xml('xml/nothing-here'), { status: 404, code: 'HTTP_ERROR', body: { error: 'not found: /xml/nothing-here' } }, "the legacy server's own 404")

  sim.killUser('demo')
  const lost = await rejects(t, gw.call('whoami'), { status: 401, code: 'SESSION_LOST' }, 'after the legacy socket closed')
  t.equal(lost.sessionEnded, true)

  await gw.login('demo', 'demo')
  await gw.logout()
  t.notOk(browser.cookies.has('lg_sid'), 'logout clears the cookie')
  await rejects(t, gw.session(), { status: 401 }, 'after logout')
})

t.test('the alarm stream on the real gateway: live alarms, then the session end', async (t) => {
  const sim = await startSimulator(t)
  const { url } = await build(t, { sim, listen: true, env: { ALARM_URL: sim.alarmUrl } })
  const browser = browserLike(url)
  const gw = createClient({ baseUrl: url, fetch: browser.fetch, WebSocket: browser.WebSocket, timers: new FakeTimers() })
  await gw.login('demo', 'demo')
  const rec = recorder()
  const sub = gw.alarms(rec.handlers)
  t.teardown(() => sub.close())
  await until('open', () => rec.statuses.some(s => s.state === 'open'), 5000)
  await until('subscribed to the simulator', () => sim.subscribers.length > 0, 5000)

  await sim.sendAlarms(3)
  await until('3 alarms', () => rec.alarms.length === 3, 5000)
  t.same(rec.alarms.map(a => a.seq), [1, 2, 3])
  t.match(rec.alarms[0], { instance: String, receivedAt: String, alarm: { alarm: { id: String, level: String, source: String, message: String } } })

  sim.killUser('demo')
  await until('session end', () => rec.ended.length === 1, 5000)
  t.same(rec.ended, ['lost'])
  t.match(rec.statuses.at(-1), { state: 'closed', reason: 'session' })
})

t.test('an operator on the real gateway: a revoked session ends the stream with revoked; a login during a drain is DRAINING', async (t) => {
  const token = 'client-test-operator-token-0123456789'
  const { url, app } = await build(t, { listen: true, env: { ADMIN_PORT: '0', ADMIN_TOKEN: token } })
  const operator = async (method: string, path: string): Promise<Response> =>
    await fetch(`${app.adminUrl ?? ''}${path}`, { method, headers: { authorization: `Bearer ${token}` } })
  const browser = browserLike(url)
  const gw = createClient({ baseUrl: url, fetch: browser.fetch, WebSocket: browser.WebSocket, timers: new FakeTimers() })
  await gw.login('demo', 'demo')
  const rec = recorder()
  const sub = gw.alarms(rec.handlers)
  t.teardown(() => sub.close())
  await until('open', () => rec.statuses.some(s => s.state === 'open'), 5000)

  t.equal((await operator('DELETE', '/admin/users/demo')).status, 200)
  await until('session end', () => rec.ended.length === 1, 5000)
  t.same(rec.ended, ['revoked'], 'onSessionEnd says revoked')
  t.match(rec.statuses.at(-1), { state: 'closed', reason: 'session' })
  const lost = await rejects(t, gw.call('whoami'), { status: 401, code: 'SESSION_LOST' }, 'a call afterwards')
  t.ok(lost.sessionEnded)
  t.match(lost.message, /ended by an operator/)

  t.equal((await operator('POST', '/admin/drain')).status, 204)
  const refused = await rejects(t, gw.login('demo', 'demo'), { status: 503, code: 'DRAINING' }, 'a login during the drain')
  t.ok(refused.retryLater, 'retry later (elsewhere)')
  t.notOk(refused.sessionEnded)
  t.equal((await operator('DELETE', '/admin/drain')).status, 204)
  t.match(await gw.login('demo', 'demo'), { user: 'demo' }, 'and after it')
})

t.test('errors that never reached the gateway, and odd answers', async (t) => {
  const gw = createClient({ baseUrl: 'http://127.0.0.1:9', fetch: async () => { throw new TypeError('fetch failed') } })
  await rejects(t, gw.session(), { status: 0, code: 'NETWORK_ERROR', message: /cannot be reached: fetch failed/ }, 'no connection')

  const html = createClient({ baseUrl: 'http://gw.test', fetch: async () => new Response('<html>bad gateway</html>', { status: 502, headers: { 'content-type': 'text/html' } }) })
  await rejects(t, html.call('whoami'), { status: 502, code: 'HTTP_ERROR', body: '<html>bad gateway</html>' }, 'a proxy error page')

  const broken = createClient({ baseUrl: 'http://gw.test', fetch: async () => new Response('{"res', { status: 200, headers: { 'content-type': 'application/json' } }) })
  await rejects(t, broken.call('whoami'), { status: 200, code: 'BAD_RESPONSE' }, 'JSON that does not parse')

  const shapeless = createClient({ baseUrl: 'http://gw.test', fetch: async () => Response.json({ nope: 1 }) })
  await rejects(t, shapeless.call('whoami'), { status: 200, code: 'BAD_RESPONSE' }, 'JSON without a result')

  t.throws(() => createClient(), { name: 'TypeError', message: /baseUrl is required/ }, 'outside a page a baseUrl is required')
})

t.test('requests: paths under a base path, JSON bodies, credentials by origin', async (t) => {
  const seen: Array<{ url: string, init: RequestInit | undefined }> = []
  const spy: typeof fetch = async (input, init) => {
    seen.push({ url: String(input), init })
    return Response.json({ result: null, user: 'u' })
  }
  const page = { href: 'https://app.example.com/ops/', origin: 'https://app.example.com' }
  const g = globalThis as { location?: unknown }
  g.location = page
  t.teardown(() => { delete g.location })

  await createClient({ fetch: spy }).call('system.listMethods', 1)
  await createClient({ baseUrl: '/gw/', fetch: spy }).login('a', 'b')
  await createClient({ baseUrl: 'https://gateway.example.com', fetch: spy }).call('ns:do/it')
  t.same(seen.map(s => s.url), [
    'https://app.example.com/api/rpc/system.listMethods',
    'https://app.example.com/gw/api/login',
    'https://gateway.example.com/api/rpc/ns:do/it'
  ])
  t.same(seen.map(s => s.init?.credentials), ['same-origin', 'same-origin', 'include'], 'include only for another origin')
  t.match(seen[0]?.init, { method: 'POST', body: '[1]', headers: { 'content-type': 'application/json', accept: 'application/json' } })
  t.match(seen[1]?.init, { body: '{"username":"a","password":"b"}' })
})
