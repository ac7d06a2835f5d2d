// The operator API (CONTRACT §6) through real HTTP: its own listener on an ephemeral loopback
// port beside the browsers' port, the simulator as the legacy system, `ws` as the browser's
// WebSocket.
import net from 'node:net'
import { test, type Test } from 'tap'
import WebSocket from 'ws'
import { build, cookieHeader, eventually, JSON_HEADERS } from '../helper.js'
import { startGateway as startProcess, exitWithin, freePort } from '../gateway-process.js'
import type { LogDestination } from '../../lib/logger.js'

const TOKEN = 'test-operator-token-0123456789abcdef'
const ADMIN_ENV = { ADMIN_PORT: '0', ADMIN_TOKEN: TOKEN }
const AUTH = { authorization: `Bearer ${TOKEN}` }

interface ErrorBody { statusCode: number, code: string, error: string, message: string }
interface SessionRow { id: string, user: string, createdAt: string, lastActivityAt: string, calls: number, queued: number, websockets: number }

/** Log lines as JSON objects. */
function logCollector (): { stream: LogDestination, lines: Array<Record<string, unknown>>, text: () => string } {
  const raw: string[] = []
  return {
    stream: { write: (line: string) => { raw.push(line) } },
    get lines () { return raw.map(l => JSON.parse(l) as Record<string, unknown>) },
    text: () => raw.join('')
  }
}

async function startGateway (t: Test, env: Record<string, string> = {}, logStream?: LogDestination): Promise<Awaited<ReturnType<typeof build>> & { admin: string }> {
  const built = await build(t, { listen: true, env: { ...ADMIN_ENV, ...env }, ...(logStream === undefined ? {} : { logStream }) })
  const admin = built.app.adminUrl
  if (admin === undefined) throw new Error('the operator API is not listening')
  return { ...built, admin }
}

async function login (url: string, user: string): Promise<string> {
  const res = await fetch(`${url}/api/login`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ username: user, password: user }) })
  if (res.status !== 200) throw new Error(`login ${user}: ${res.status} ${await res.text()}`)
  return cookieHeader(res)
}

async function call (url: string, cookie: string, method: string, params: unknown[] = []): Promise<Response> {
  return await fetch(`${url}/api/rpc/${method}`, { method: 'POST', headers: { ...JSON_HEADERS, cookie }, body: JSON.stringify(params) })
}

async function sessions (admin: string): Promise<SessionRow[]> {
  const res = await fetch(`${admin}/admin/sessions`, { headers: AUTH })
  if (res.status !== 200) throw new Error(`GET /admin/sessions: ${res.status} ${await res.text()}`)
  return (await res.json() as { sessions: SessionRow[] }).sessions
}

/** The contract's error body with this status and code. */
async function expectError (t: Test, res: Response, status: number, code: string, what: string): Promise<ErrorBody> {
  t.equal(res.status, status, `${what}: ${status}`)
  t.match(res.headers.get('content-type'), /^application\/json/, `${what}: JSON`)
  const body = await res.json() as ErrorBody
  t.match(body, { statusCode: status, code, error: String, message: String }, `${what}: ${code}`)
  t.strictSame(Object.keys(body).sort(), ['code', 'error', 'message', 'statusCode'], `${what}: the contract's shape`)
  return body
}

/** An alarm WebSocket with the session's cookie; collects its frames and its close code. */
async function openAlarms (url: string, cookie: string): Promise<{ ws: WebSocket, frames: Array<Record<string, unknown>>, closed: Promise<number> }> {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/ws/alarms`, { headers: { cookie } })
  const frames: Array<Record<string, unknown>> = []
  ws.on('message', (data) => { frames.push(JSON.parse(String(data)) as Record<string, unknown>) })
  const closed = new Promise<number>((resolve) => { ws.on('close', (code) => resolve(code)) })
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
  if (!await eventually(() => frames.some(f => f.type === 'hello'))) throw new Error('no hello')
  return { ws, frames, closed }
}

function metric (text: string, name: string): number | undefined {
  const line = text.split('\n').find(l => l.split(' ')[0] === name)
  return line === undefined ? undefined : Number(line.split(' ').at(-1))
}

test('without the right bearer token every request is 401 UNAUTHENTICATED, unknown paths included', async (t) => {
  const log = logCollector()
  const { admin } = await startGateway(t, {}, log.stream)
  t.match(admin, /^http:\/\/127\.0\.0\.1:\d+$/, 'on loopback, an ephemeral port')
  const cases: Array<[string, Record<string, string>]> = [
    ['no token', {}],
    ['a wrong token', { authorization: `Bearer ${TOKEN}x` }],
    ['a prefix of the token', { authorization: `Bearer ${TOKEN.slice(0, 16)}` }],
    ['another scheme', { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` }],
    ['the scheme alone', { authorization: 'Bearer' }],
    ['the token without a scheme', { authorization: TOKEN }]
  ]
  for (const [what, headers] of cases) {
    for (const [method, path] of [['GET', '/admin/sessions'], ['POST', '/admin/drain'], ['DELETE', '/admin/users/demo'], ['GET', '/metrics'], ['GET', '/nowhere']] as const) {
      const res = await fetch(admin + path, { method, headers })
      await expectError(t, res, 401, 'UNAUTHENTICATED', `${what}: ${method} ${path}`)
      t.match(res.headers.get('www-authenticate'), /^Bearer realm="legacy-gateway"/, 'says which scheme')
    }
  }
  const refusals = log.lines.filter(l => l.msg === 'operator API: request refused (bearer token missing or wrong)')
  t.equal(refusals.length, cases.length * 5, 'every refusal is logged')
  t.match(refusals[0], { level: 40, from: '127.0.0.1', token: 'missing', method: 'GET', url: '/admin/sessions' })
  t.match(refusals[5], { level: 40, from: '127.0.0.1', token: 'wrong' })
  t.notMatch(log.text(), TOKEN.slice(0, 16), 'no token (or part of one) in the log')

  // The right one: in any letter case of the scheme.
  t.equal((await fetch(`${admin}/admin/sessions`, { headers: { authorization: `bearer ${TOKEN}` } })).status, 200, 'the right token')
  await expectError(t, await fetch(`${admin}/nowhere`, { headers: AUTH }), 404, 'NOT_FOUND', 'an unknown path with the token')
  const scrape = await fetch(`${admin}/metrics`, { headers: AUTH })
  t.equal(scrape.status, 200)
  const text = await scrape.text()
  t.equal(metric(text, 'legacy_gateway_operator_refused_total'), cases.length * 5, 'refusals are counted')
})

test('the admin routes do not exist on the browsers\' port; /metrics is the same scrape on both', async (t) => {
  const { url, admin } = await startGateway(t)
  for (const [method, path] of [['GET', '/admin/sessions'], ['DELETE', '/admin/sessions/x'], ['DELETE', '/admin/users/demo'], ['POST', '/admin/drain'], ['DELETE', '/admin/drain']] as const) {
    await expectError(t, await fetch(url + path, { method, headers: { ...AUTH, ...JSON_HEADERS }, ...(method === 'GET' ? {} : { body: '{}' }) }), 404, 'NOT_FOUND', `browsers' port: ${method} ${path}`)
  }
  const names = (text: string): string[] => [...new Set(text.split('\n').filter(l => l.startsWith('# TYPE ')).map(l => l.split(' ')[2] ?? ''))].sort()
  const browserSide = await (await fetch(`${url}/metrics`)).text()
  const adminSide = await (await fetch(`${admin}/metrics`, { headers: AUTH })).text()
  t.ok(names(browserSide).length > 20, 'metrics on the browsers\' port')
  t.strictSame(names(adminSide), names(browserSide), 'the same metrics on the operator port')
  t.equal(metric(adminSide, 'legacy_gateway_draining'), 0)
  t.match(adminSide, /legacy_gateway_operator_actions_total\{action="end_user"\} 0/, 'every action exists at 0')
  t.match(adminSide, /legacy_gateway_sessions_ended_total\{reason="revoked"\} 0/)
})

test('list the sessions: an opaque handle per session, never the cookie, and their counts', async (t) => {
  const { url, admin, sim } = await startGateway(t)
  t.strictSame(await sessions(admin), [], 'none yet')
  const alice = await login(url, 'alice')
  const bob = await login(url, 'bob')
  for (let i = 0; i < 3; i++) t.equal((await call(url, alice, 'echo', [i])).status, 200)
  const feed = await openAlarms(url, bob)
  // Two slow calls of bob's: one on his socket, one waiting behind it.
  const slow = [call(url, bob, 'sleep', [400]), call(url, bob, 'sleep', [10])]
  t.ok(await eventually(() => sim.ledger.some(e => e.user === 'bob' && e.method === 'sleep')), 'bob\'s sleep reached the legacy server')

  const list = await sessions(admin)
  t.equal(list.length, 2)
  const a = list.find(s => s.user === 'alice')
  const b = list.find(s => s.user === 'bob')
  t.match(a, { user: 'alice', calls: 3, queued: 0, websockets: 0 })
  t.match(b, { user: 'bob', calls: 2, queued: 2, websockets: 1 })
  for (const s of list) {
    t.match(s.id, /^[A-Za-z0-9_-]{22}$/, 'a 128-bit handle')
    t.ok(!Number.isNaN(Date.parse(s.createdAt)) && !Number.isNaN(Date.parse(s.lastActivityAt)), 'ISO times')
    t.strictSame(Object.keys(s).sort(), ['calls', 'createdAt', 'id', 'lastActivityAt', 'queued', 'user', 'websockets'])
  }
  const cookies = [alice, bob].map(c => /lg_sid=([^;]+)/.exec(c)?.[1] ?? '')
  for (const s of list) {
    for (const value of cookies) {
      t.not(s.id, value, 'the handle is not a cookie')
      t.notOk(value.includes(s.id) || s.id.includes(value), 'nor part of one')
    }
    // A handle sent as the cookie is nobody.
    await expectError(t, await call(url, `lg_sid=${s.id}`, 'whoami'), 401, 'UNAUTHENTICATED', 'a handle used as a cookie')
  }
  t.notOk(JSON.stringify(list).includes(cookies[0] ?? '?') || JSON.stringify(list).includes(cookies[1] ?? '?'), 'no cookie anywhere in the list')
  for (const res of await Promise.all(slow)) t.equal(res.status, 200)
  feed.ws.close()
  const ids = (await sessions(admin)).map(s => s.id).sort()
  t.strictSame(ids, list.map(s => s.id).sort(), 'a handle stays the same for the session\'s life')
})

test('end one session: legacy logout on its socket, WebSocket told revoked, its cookie then SESSION_LOST; the others go on', async (t) => {
  const log = logCollector()
  const { url, admin, sim, app } = await startGateway(t, {}, log.stream)
  const alice = await login(url, 'alice')
  const alice2 = await login(url, 'alice')
  const bob = await login(url, 'bob')
  const socketOf = async (cookie: string): Promise<number> => ((await (await call(url, cookie, 'whoami')).json()) as { result: { socket: number } }).result.socket
  const aliceSocket = await socketOf(alice)
  const feed = await openAlarms(url, alice)
  const bobFeed = await openAlarms(url, bob)

  const target = (await sessions(admin)).filter(s => s.user === 'alice').find(s => s.calls === 1)
  if (target === undefined) throw new Error('alice\'s first session is not listed')
  const res = await fetch(`${admin}/admin/sessions/${target.id}`, { method: 'DELETE', headers: AUTH })
  t.equal(res.status, 204, '204')
  t.equal(await res.text(), '', 'no body')

  t.same(feed.frames.at(-1), { type: 'session', state: 'revoked' }, 'the WebSocket was told, before the answer')
  t.equal(await feed.closed, 1000, 'and closed normally')
  t.ok(sim.ledger.some(e => e.method === 'logout' && e.socketId === aliceSocket && e.user === 'alice'), 'the legacy logout ran on her pinned socket')
  t.ok(await eventually(() => sim.sockets().every(s => s.id !== aliceSocket || !s.open)), 'and that socket is closed')

  const lost = await expectError(t, await call(url, alice, 'whoami'), 401, 'SESSION_LOST', 'her cookie afterwards')
  t.match(lost.message, /ended by an operator/)
  await expectError(t, await fetch(`${url}/api/session`, { headers: { cookie: alice } }), 401, 'SESSION_LOST', 'GET /api/session likewise')
  t.equal((await call(url, alice2, 'whoami')).status, 200, 'her other session goes on')
  t.equal((await call(url, bob, 'whoami')).status, 200, 'bob goes on')
  t.equal(bobFeed.ws.readyState, WebSocket.OPEN, 'and so does bob\'s WebSocket')
  t.equal((await sessions(admin)).length, 2)

  await expectError(t, await fetch(`${admin}/admin/sessions/${target.id}`, { method: 'DELETE', headers: AUTH }), 404, 'NOT_FOUND', 'the same handle again')
  await expectError(t, await fetch(`${admin}/admin/sessions/not-a-handle`, { method: 'DELETE', headers: AUTH }), 404, 'NOT_FOUND', 'a handle that never was')
  const cookieValue = /lg_sid=([^;]+)/.exec(alice2)?.[1] ?? ''
  t.notMatch(log.text(), cookieValue, 'no cookie in the log (until the test sends one as a handle, below)')
  await expectError(t, await fetch(`${admin}/admin/sessions/${cookieValue}`, { method: 'DELETE', headers: AUTH }), 404, 'NOT_FOUND', 'a cookie value is not a handle')
  t.equal((await call(url, alice2, 'whoami')).status, 200, 'and ends nothing')

  const line = log.lines.find(l => l.msg === 'operator: end_session')
  t.match(line, { level: 30, operator: 'ADMIN_TOKEN', from: '127.0.0.1', action: 'end_session', session: target.id, user: 'alice', component: 'admin' }, 'the action is logged: who, from where, which session and user')
  t.ok(log.lines.some(l => l.msg === 'session ended' && l.reason === 'revoked'), 'the session store logs the reason')
  const scrape = await (await fetch(`${admin}/metrics`, { headers: AUTH })).text()
  t.match(scrape, /legacy_gateway_sessions_ended_total\{reason="revoked"\} 1/)
  t.match(scrape, /legacy_gateway_operator_actions_total\{action="end_session"\} 1/)
  t.notMatch(log.text(), TOKEN, 'the token is never logged')
  bobFeed.ws.close()
  await app.close()
})

test('end every session of a user: {"ended": N}; another user goes on', async (t) => {
  const { url, admin, sim } = await startGateway(t)
  const alice = [await login(url, 'alice'), await login(url, 'alice')]
  const bob = await login(url, 'bob')
  const feeds = await Promise.all(alice.map(async c => await openAlarms(url, c)))
  sim.clearLedger()

  const res = await fetch(`${admin}/admin/users/alice`, { method: 'DELETE', headers: AUTH })
  t.equal(res.status, 200)
  t.strictSame(await res.json(), { ended: 2 })
  t.equal(sim.ledger.filter(e => e.method === 'logout' && e.user === 'alice').length, 2, 'a legacy logout for each')
  for (const feed of feeds) {
    t.same(feed.frames.at(-1), { type: 'session', state: 'revoked' })
    t.equal(await feed.closed, 1000)
  }
  for (const cookie of alice) await expectError(t, await call(url, cookie, 'whoami'), 401, 'SESSION_LOST', 'each of her cookies')
  t.equal((await call(url, bob, 'whoami')).status, 200, 'bob goes on')
  t.strictSame((await sessions(admin)).map(s => s.user), ['bob'])

  const again = await fetch(`${admin}/admin/users/alice`, { method: 'DELETE', headers: AUTH })
  t.strictSame([again.status, await again.json()], [200, { ended: 0 }], 'nobody left: 0')
  const odd = await fetch(`${admin}/admin/users/${encodeURIComponent('名 with/slash')}`, { method: 'DELETE', headers: AUTH })
  t.strictSame([odd.status, await odd.json()], [200, { ended: 0 }], 'any user name, encoded')
  t.equal((await login(url, 'alice')).length > 0, true, 'she may log in again (keeping her out is the legacy side\'s business)')
})

test('drain: logins 503 DRAINING, /readyz 503 naming draining, a live session keeps working; undrain restores', async (t) => {
  const log = logCollector()
  const { url, admin } = await startGateway(t, {}, log.stream)
  const alice = await login(url, 'alice')
  const feed = await openAlarms(url, alice)
  t.equal((await fetch(`${url}/readyz`)).status, 200, 'ready before')

  const drain = await fetch(`${admin}/admin/drain`, { method: 'POST', headers: AUTH })
  t.equal(drain.status, 204)
  t.equal((await fetch(`${admin}/admin/drain`, { method: 'POST', headers: { ...AUTH, ...JSON_HEADERS } })).status, 204, 'again (an empty JSON body is no body): still 204')

  const ready = await fetch(`${url}/readyz`)
  t.equal(ready.status, 503, '/readyz 503')
  t.match(await ready.json(), { status: 'not ready', checks: { legacy: 'ok', draining: 'drained by an operator' }, failing: ['draining'] })
  const refused = await expectError(t, await fetch(`${url}/api/login`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ username: 'bob', password: 'bob' }) }), 503, 'DRAINING', 'a new login')
  t.match(refused.message, /drain/)
  t.equal((await sessions(admin)).length, 1, 'no session was opened')

  t.equal((await call(url, alice, 'whoami')).status, 200, 'the live session keeps calling')
  t.equal((await fetch(`${url}/api/session`, { headers: { cookie: alice } })).status, 200)
  t.equal(feed.ws.readyState, WebSocket.OPEN, 'its WebSocket stays open')
  t.equal(metric(await (await fetch(`${admin}/metrics`, { headers: AUTH })).text(), 'legacy_gateway_draining'), 1, 'draining gauge 1')

  t.equal((await fetch(`${admin}/admin/drain`, { method: 'DELETE', headers: AUTH })).status, 204, 'undrain')
  t.equal((await fetch(`${url}/readyz`)).status, 200, 'ready again')
  t.ok((await login(url, 'bob')).includes('lg_sid='), 'logins work again')
  const scrape = await (await fetch(`${admin}/metrics`, { headers: AUTH })).text()
  t.equal(metric(scrape, 'legacy_gateway_draining'), 0)
  t.match(scrape, /legacy_gateway_operator_actions_total\{action="drain"\} 2/)
  t.match(scrape, /legacy_gateway_operator_actions_total\{action="undrain"\} 1/)
  t.match(log.lines.filter(l => l.action === 'drain'), [{ msg: 'operator: drain', changed: true, from: '127.0.0.1' }, { changed: false }])
  feed.ws.close()

  await expectError(t, await fetch(`${admin}/admin/drain`, { method: 'POST', headers: { ...AUTH, 'content-type': 'text/plain' }, body: 'please' }), 400, 'BAD_REQUEST', 'a body is refused, not ignored')
})

test('the operator listener closes with the gateway; a port in use stops the start', async (t) => {
  const { app, admin } = await startGateway(t)
  const port = Number(new URL(admin).port)
  await app.close()
  const refused = await new Promise<string>((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.once('connect', () => { socket.destroy(); resolve('connected') })
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'))
  })
  t.equal(refused, 'ECONNREFUSED', 'nothing listens on the operator port after close')

  const blocker = net.createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { blocker.close() })
  const taken = (blocker.address() as net.AddressInfo).port
  await t.rejects(build(t, { listen: true, env: { ADMIN_PORT: String(taken), ADMIN_TOKEN: TOKEN } }), /operator API cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/)
})

test('without ADMIN_PORT there is no operator listener and no drain', async (t) => {
  const { app, url } = await build(t, { listen: true })
  t.equal(app.adminUrl, undefined)
  t.equal(app.operator.draining, false)
  await expectError(t, await fetch(`${url}/admin/sessions`, { headers: AUTH }), 404, 'NOT_FOUND', 'no admin route on the browsers\' port')
})

test('npm start with ADMIN_PORT: the operator API answers, and SIGTERM closes it with the gateway (exit 0)', async (t) => {
  const adminPort = await freePort()
  const gw = await startProcess(t, { ADMIN_PORT: String(adminPort), ADMIN_TOKEN: TOKEN })
  const listening = await gw.waitForLog(l => typeof l.msg === 'string' && l.msg.startsWith('operator API listening'))
  t.match(listening, { component: 'admin', msg: `operator API listening at http://127.0.0.1:${adminPort} (ADMIN_PORT)` })
  t.equal(gw.logs.filter(l => typeof l.msg === 'string' && l.msg.startsWith('Server listening')).length, 1, '"Server listening" is the browsers\' port only')
  const admin = `http://127.0.0.1:${adminPort}`
  const cookie = await login(gw.url, 'demo')
  t.match(await sessions(admin), [{ user: 'demo' }])
  t.equal((await fetch(`${admin}/admin/drain`, { method: 'POST', headers: AUTH })).status, 204)
  t.equal((await fetch(`${gw.url}/readyz`)).status, 503)
  t.equal((await call(gw.url, cookie, 'whoami')).status, 200, 'the session goes on')
  gw.child.kill('SIGTERM')
  t.equal(await exitWithin(gw, 15_000), 0, 'exit 0')
  const after = await new Promise<string>((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port: adminPort })
    socket.once('connect', () => { socket.destroy(); resolve('connected') })
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'))
  })
  t.equal(after, 'ECONNREFUSED', 'the operator port is closed')
})
