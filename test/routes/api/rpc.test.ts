import { test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { build, login, rpc, cookieHeader, JSON_HEADERS } from '../../helper.js'
import { encodeResponse } from '../../../lib/xmlrpc.js'

interface WhoAmI { user: string, socket: number }

test('two users, hundreds of interleaved concurrent calls: each on its own socket', async (t) => {
  const { sim, url } = await build(t, { listen: true })
  const cookies: Record<string, string> = {}
  for (const user of ['alice', 'bob']) {
    const res = await fetch(`${url}/api/login`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ username: user, password: user }) })
    t.equal(res.status, 200)
    t.same(await res.json(), { user, result: { user, socket: sim.ledger.at(-1)?.socketId, motd: 'Welcome to the legacy simulator' } })
    cookies[user] = cookieHeader(res)
  }
  const calls = Array.from({ length: 300 }, async (_, i) => {
    const user = i % 2 === 0 ? 'alice' : 'bob'
    const res = await fetch(`${url}/api/rpc/whoami`, { method: 'POST', headers: { ...JSON_HEADERS, cookie: cookies[user] as string }, body: '[]' })
    const body = await res.json() as { result: WhoAmI }
    return { user, status: res.status, seen: body.result }
  })
  const results = await Promise.all(calls)
  const socketOf = new Map<string, Set<number>>()
  for (const r of results) {
    t.equal(r.status, 200)
    t.equal(r.seen.user, r.user, 'each answer names its own user')
    const set = socketOf.get(r.user) ?? new Set()
    set.add(r.seen.socket)
    socketOf.set(r.user, set)
  }
  t.equal(socketOf.get('alice')?.size, 1, "all of alice's calls on one socket")
  t.equal(socketOf.get('bob')?.size, 1, "all of bob's calls on one socket")
  t.not([...socketOf.get('alice') ?? []][0], [...socketOf.get('bob') ?? []][0])
  const usersBySocket = new Map<number, Set<string | null>>()
  for (const e of sim.ledger) {
    const set = usersBySocket.get(e.socketId) ?? new Set()
    set.add(e.user)
    usersBySocket.set(e.socketId, set)
  }
  for (const [socket, users] of usersBySocket) {
    t.ok([...users].filter(u => u !== null).length <= 1, `socket ${socket} carried one user`)
  }
  t.equal(sim.ledger.filter(e => e.method === 'whoami').length, 300, 'no call was lost or retried')
})

test('idle past undici\'s 4 s keep-alive, with a Keep-Alive: timeout=2 hint: same socket', async (t) => {
  const { app, sim } = await build(t)
  sim.setKeepAliveHint(2)
  const cookie = await login(app, 'alice')
  const first = (await rpc(app, cookie, 'whoami')).json().result as WhoAmI
  await sleep(6000)
  const res = await rpc(app, cookie, 'whoami')
  t.equal(res.statusCode, 200)
  t.equal((res.json().result as WhoAmI).socket, first.socket, 'the pinned socket survived idleness and the hint')
  t.equal(sim.sockets().filter(s => s.user === 'alice').length, 1)
})

test('killing one user\'s socket loses that session only, never a 200 from a new socket', async (t) => {
  const { app, sim } = await build(t)
  const alice = await login(app, 'alice')
  const bob = await login(app, 'bob')
  const bobSocket = (await rpc(app, bob, 'whoami')).json().result.socket
  t.equal(sim.killUser('alice'), 1)
  await sleep(50)
  const lost = await rpc(app, alice, 'whoami')
  t.equal(lost.statusCode, 401)
  t.equal(lost.json().code, 'SESSION_LOST')
  t.same(Object.keys(lost.json()).sort(), ['code', 'error', 'message', 'statusCode'])
  const again = await rpc(app, alice, 'whoami')
  t.equal(again.json().code, 'SESSION_LOST', 'every later call too')
  const session = await app.inject({ url: '/api/session', headers: { cookie: alice } })
  t.equal(session.statusCode, 401)
  t.equal(session.json().code, 'SESSION_LOST')
  const ok = await rpc(app, bob, 'whoami')
  t.equal(ok.statusCode, 200)
  t.equal(ok.json().result.socket, bobSocket, 'bob is untouched')
  t.equal(sim.ledger.filter(e => e.user === null && e.method === 'whoami').length, 0, 'no call reached the legacy side unauthenticated')
})

test('a socket killed while a call is in flight: that call answers SESSION_LOST', async (t) => {
  const { app, sim } = await build(t)
  const alice = await login(app, 'alice')
  const inflight = rpc(app, alice, 'sleep', [2000])
  const queued = rpc(app, alice, 'whoami')
  await sleep(200)
  sim.killUser('alice')
  const [a, b] = await Promise.all([inflight, queued])
  t.equal(a.statusCode, 401)
  t.equal(a.json().code, 'SESSION_LOST')
  t.equal(b.statusCode, 401)
  t.equal(b.json().code, 'SESSION_LOST', 'the call queued behind it never reaches a new socket')
  t.equal(sim.ledger.filter(e => e.method === 'whoami').length, 0)
})

test('a browser abort mid-call keeps the session and its socket', async (t) => {
  const { sim, url } = await build(t, { listen: true })
  const res = await fetch(`${url}/api/login`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ username: 'alice', password: 'alice' }) })
  const cookie = cookieHeader(res)
  const before = (await (await fetch(`${url}/api/rpc/whoami`, { method: 'POST', headers: { ...JSON_HEADERS, cookie }, body: '[]' })).json() as { result: WhoAmI }).result
  const ac = new AbortController()
  const aborted = fetch(`${url}/api/rpc/sleep`, { method: 'POST', headers: { ...JSON_HEADERS, cookie }, body: '[400]', signal: ac.signal })
  await sleep(100)
  ac.abort()
  await t.rejects(aborted)
  const after = await fetch(`${url}/api/rpc/whoami`, { method: 'POST', headers: { ...JSON_HEADERS, cookie }, body: '[]' })
  t.equal(after.status, 200)
  t.equal((await after.json() as { result: WhoAmI }).result.socket, before.socket, 'same socket after the abort')
  const sleepEntry = sim.ledger.find(e => e.method === 'sleep')
  t.equal(sleepEntry?.outcome, 'ok', 'the legacy answer was read to the end and discarded')
})

test('a call past LEGACY_TIMEOUT_MS: 504, socket closed, session lost', async (t) => {
  const { app, sim } = await build(t, { env: { LEGACY_TIMEOUT_MS: '300' } })
  const cookie = await login(app, 'alice')
  sim.setFault({ mode: 'hang', count: 1 })
  const started = Date.now()
  const res = await rpc(app, cookie, 'whoami')
  t.equal(res.statusCode, 504)
  t.equal(res.json().code, 'UPSTREAM_TIMEOUT')
  t.ok(Date.now() - started < 3000, 'answered near the timeout')
  const next = await rpc(app, cookie, 'whoami')
  t.equal(next.statusCode, 401)
  t.equal(next.json().code, 'SESSION_LOST')
  await sleep(50)
  t.equal(sim.sockets().filter(s => s.user === 'alice').length, 0, 'the socket is closed')
})

test('legacy stopped at login: 503 UPSTREAM_UNAVAILABLE; restarted: login works', async (t) => {
  const { app, sim } = await build(t)
  await sim.stop()
  const res = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'alice', password: 'alice' } })
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'UPSTREAM_UNAVAILABLE')
  t.equal(app.sessions.size, 0)
  await sim.start()
  const cookie = await login(app, 'alice')
  t.equal((await rpc(app, cookie, 'whoami')).json().result.user, 'alice')
})

test('legacy crash with sessions open: every session is lost, new logins work after restart', async (t) => {
  const { app, sim } = await build(t)
  const alice = await login(app, 'alice')
  await sim.stop()
  await sleep(50)
  t.equal((await rpc(app, alice, 'whoami')).json().code, 'SESSION_LOST')
  await sim.start()
  t.equal((await rpc(app, alice, 'whoami')).json().code, 'SESSION_LOST', 'never silently reconnected')
  const again = await login(app, 'alice')
  t.equal((await rpc(app, again, 'whoami')).statusCode, 200)
})

test('logout: legacy logout called, socket closed, cookie cleared, 204', async (t) => {
  const { app, sim } = await build(t)
  const cookie = await login(app, 'alice')
  const res = await app.inject({ method: 'POST', url: '/api/logout', headers: { cookie } })
  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  const cleared = res.cookies.find(c => c.name === 'lg_sid')
  t.ok(cleared && (cleared.maxAge === 0 || (cleared.expires !== undefined && cleared.expires.getTime() < Date.now())), 'cookie cleared')
  t.ok(sim.ledger.some(e => e.method === 'logout' && e.user === 'alice'), 'legacy logout called on the pinned socket')
  await sleep(50)
  t.equal(sim.sockets().filter(s => s.user === 'alice').length, 0, 'socket closed')
  const after = await rpc(app, cookie, 'whoami')
  t.equal(after.statusCode, 401)
  t.equal(after.json().code, 'UNAUTHENTICATED')
  const twice = await app.inject({ method: 'POST', url: '/api/logout', headers: { cookie } })
  t.equal(twice.statusCode, 204, 'logout is idempotent')
})

test('idle sessions expire: logged out on the legacy side, later calls SESSION_LOST', async (t) => {
  const { app, sim } = await build(t, { env: { SESSION_IDLE_MS: '200' } })
  const cookie = await login(app, 'alice')
  await sleep(600)
  t.equal(app.sessions.size, 0)
  t.ok(sim.ledger.some(e => e.method === 'logout' && e.user === 'alice'))
  const res = await rpc(app, cookie, 'whoami')
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'SESSION_LOST')
})

test('activity keeps a session alive', async (t) => {
  const { app } = await build(t, { env: { SESSION_IDLE_MS: '400' } })
  const cookie = await login(app, 'alice')
  for (let i = 0; i < 6; i++) {
    await sleep(150)
    t.equal((await rpc(app, cookie, 'whoami')).statusCode, 200)
  }
})

test('no cookie, a forged cookie, and a spoofed uid', async (t) => {
  const { app } = await build(t)
  const none = await rpc(app, '', 'whoami')
  t.equal(none.statusCode, 401)
  t.equal(none.json().code, 'UNAUTHENTICATED')
  for (const forged of ['lg_sid=' + 'A'.repeat(43), 'lg_sid=../../etc', 'lg_sid=', 'lg_sid=' + 'x'.repeat(5000)]) {
    const res = await rpc(app, forged, 'whoami')
    t.equal(res.statusCode, 401, forged.slice(0, 20))
    t.equal(res.json().code, 'UNAUTHENTICATED')
  }
  const alice = await login(app, 'alice')
  await login(app, 'bob')
  const spoof = await app.inject({
    method: 'POST',
    url: '/api/rpc/whoami?uid=bob&user=bob',
    headers: { ...JSON_HEADERS, cookie: alice, 'x-user-id': 'bob', 'x-uid': 'bob' },
    payload: { params: [], uid: 'bob' }
  })
  t.equal(spoof.statusCode, 200)
  t.equal(spoof.json().result.user, 'alice', 'the identity comes from the session cookie alone')
  const session = await app.inject({ url: '/api/session?uid=bob', headers: { cookie: alice } })
  t.equal(session.json().user, 'alice')
})

test('GET /api/session', async (t) => {
  const { app } = await build(t)
  const before = Date.now()
  const cookie = await login(app, 'alice')
  const res = await app.inject({ url: '/api/session', headers: { cookie } })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.same(Object.keys(body).sort(), ['connected', 'createdAt', 'lastActivityAt', 'user'])
  t.equal(body.user, 'alice')
  t.equal(body.connected, true)
  t.ok(Date.parse(body.createdAt) >= before - 1000)
  t.ok(Date.parse(body.lastActivityAt) >= Date.parse(body.createdAt))
  const anon = await app.inject({ url: '/api/session' })
  t.equal(anon.statusCode, 401)
  t.equal(anon.json().code, 'UNAUTHENTICATED')
})

test('the session queue is bounded: 429 SESSION_BUSY beyond SESSION_QUEUE_MAX', async (t) => {
  const { app, sim } = await build(t, { env: { SESSION_QUEUE_MAX: '2' } })
  const cookie = await login(app, 'alice')
  const results = await Promise.all(Array.from({ length: 6 }, () => rpc(app, cookie, 'sleep', [200])))
  const codes = results.map(r => r.statusCode).sort()
  t.same(codes, [200, 200, 200, 429, 429, 429], 'one on the wire, two waiting, the rest refused')
  for (const r of results.filter(r => r.statusCode === 429)) t.equal(r.json().code, 'SESSION_BUSY')
  t.equal(sim.ledger.filter(e => e.method === 'sleep').length, 3)
  t.equal((await rpc(app, cookie, 'whoami')).statusCode, 200, 'the session goes on')
})

test('login: wrong password, too many sessions, rate limit', async (t) => {
  const { app, sim } = await build(t, { env: { MAX_SESSIONS: '1', LOGIN_RATE_LIMIT: '3' } })
  const bad = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'alice', password: 'nope' } })
  t.equal(bad.statusCode, 401)
  t.equal(bad.json().code, 'LOGIN_FAILED')
  t.equal(bad.headers['set-cookie'], undefined, 'no cookie for a failed login')
  await sleep(50)
  t.equal(sim.sockets().length, 0, 'the socket of a failed login is closed')
  await login(app, 'alice')
  const full = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'bob', password: 'bob' } })
  t.equal(full.statusCode, 503)
  t.equal(full.json().code, 'TOO_MANY_SESSIONS')
  const limited = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'bob', password: 'bob' } })
  t.equal(limited.statusCode, 429)
  t.equal(limited.json().code, 'RATE_LIMITED')
  t.equal(limited.json().statusCode, 429)
})

test('faults, bad answers and bad input', async (t) => {
  const { app, sim } = await build(t, { env: { BODY_LIMIT: '2048' } })
  const cookie = await login(app, 'alice')
  const fault = await rpc(app, cookie, 'fault', [42, 'pump offline'])
  t.equal(fault.statusCode, 422)
  t.same(fault.json(), { statusCode: 422, code: 'RPC_FAULT', error: 'Unprocessable Entity', message: 'pump offline', faultCode: 42 })

  sim.setFault({ mode: 'malformed', count: 1 })
  const malformed = await rpc(app, cookie, 'whoami')
  t.equal(malformed.statusCode, 502)
  t.equal(malformed.json().code, 'BAD_UPSTREAM_RESPONSE')
  sim.setFault({ mode: 'entity', count: 1 })
  const entity = await rpc(app, cookie, 'whoami')
  t.equal(entity.statusCode, 502)
  t.equal(entity.json().code, 'BAD_UPSTREAM_RESPONSE')
  t.equal((await rpc(app, cookie, 'whoami')).statusCode, 200, 'the session survives bad XML')

  const badName = await rpc(app, cookie, 'bad name!')
  t.equal(badName.statusCode, 400)
  t.equal(badName.json().code, 'BAD_REQUEST')
  const longName = await rpc(app, cookie, 'a'.repeat(129))
  t.equal(longName.json().code, 'BAD_REQUEST')

  const text = await app.inject({ method: 'POST', url: '/api/rpc/whoami', headers: { cookie, 'content-type': 'text/plain' }, payload: '[]' })
  t.equal(text.statusCode, 415)
  t.equal(text.json().code, 'UNSUPPORTED_MEDIA_TYPE')
  const form = await app.inject({ method: 'POST', url: '/api/rpc/whoami', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, payload: 'a=1' })
  t.equal(form.statusCode, 415)
  const badJson = await app.inject({ method: 'POST', url: '/api/rpc/whoami', headers: { ...JSON_HEADERS, cookie }, payload: '[1,' })
  t.equal(badJson.statusCode, 400)
  t.equal(badJson.json().code, 'BAD_REQUEST')
  const notArray = await app.inject({ method: 'POST', url: '/api/rpc/echo', headers: { ...JSON_HEADERS, cookie }, payload: '5' })
  t.equal(notArray.statusCode, 400)
  t.equal(notArray.json().code, 'BAD_REQUEST')
  const proto = await app.inject({ method: 'POST', url: '/api/rpc/echo', headers: { ...JSON_HEADERS, cookie }, payload: '[{"__proto__":{"x":1}}]' })
  t.equal(proto.statusCode, 400)
  const big = await rpc(app, cookie, 'echo', ['x'.repeat(4096)])
  t.equal(big.statusCode, 413)
  t.equal(big.json().code, 'PAYLOAD_TOO_LARGE')
  const control = await rpc(app, cookie, 'echo', ['bell\u0007'])
  t.equal(control.statusCode, 400, 'a string XML cannot carry')
  t.equal(control.json().code, 'BAD_REQUEST')
  const loginText = await app.inject({ method: 'POST', url: '/api/login', headers: { 'content-type': 'text/plain' }, payload: '{"username":"a","password":"a"}' })
  t.equal(loginText.statusCode, 415)
  const loginSchema = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 5, password: 'x' } })
  t.equal(loginSchema.statusCode, 400)
  t.equal(loginSchema.json().code, 'BAD_REQUEST')
  const unknown = await app.inject({ url: '/nope' })
  t.equal(unknown.statusCode, 404)
  t.same(unknown.json(), { statusCode: 404, code: 'NOT_FOUND', error: 'Not Found', message: 'Route GET /nope not found' })
})

test('the legacy side closes the socket instead of answering: SESSION_LOST', async (t) => {
  const { app, sim } = await build(t)
  const cookie = await login(app, 'alice')
  sim.setFault({ mode: 'close', count: 1 })
  const res = await rpc(app, cookie, 'whoami')
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'SESSION_LOST')
})

test('JSON → XML-RPC → JSON through the gateway is the identity', async (t) => {
  const { app } = await build(t)
  const cookie = await login(app, 'alice')
  const params: unknown[] = [
    '007', '  padded  ', '', 'true', '压力过高 😀', '<&>"\'', 'line\r\nbreak',
    0, -1, 2147483647, 2147483648, -2147483649, 9007199254740991, 1.5, -0.25,
    true, false, null,
    [], [1], [[['deep']]],
    {}, { a: 1, b: { c: [null, 'x'] } }, { constructor: 'c', __proto: 1 }
  ]
  const res = await rpc(app, cookie, 'echo', params)
  t.equal(res.statusCode, 200)
  t.same(res.json().result, params)
  t.strictSame(res.json().result, params)
})

test('a second login in the same browser replaces the first session', async (t) => {
  const { app, sim } = await build(t)
  const first = await login(app, 'alice')
  const res = await app.inject({ method: 'POST', url: '/api/login', headers: { ...JSON_HEADERS, cookie: first }, payload: { username: 'bob', password: 'bob' } })
  t.equal(res.statusCode, 200)
  await sleep(100)
  t.equal(app.sessions.size, 1)
  t.equal(sim.sockets().filter(s => s.user === 'alice').length, 0, "the replaced session's socket is closed")
})

test('heartbeat keeps the login alive on the same socket; a failed heartbeat ends the session', async (t) => {
  const { app, sim } = await build(t, { env: { LEGACY_HEARTBEAT_METHOD: 'heartbeat', LEGACY_HEARTBEAT_MS: '100' } })
  const cookie = await login(app, 'alice')
  await sleep(450)
  const beats = sim.ledger.filter(e => e.method === 'heartbeat')
  t.ok(beats.length >= 2, `heartbeats sent (${beats.length})`)
  t.equal(new Set(beats.map(b => b.socketId)).size, 1)
  t.ok(beats.every(b => b.user === 'alice'))
  sim.setFault({ mode: 'malformed', count: 1 })
  await sleep(400)
  t.equal(app.sessions.size, 0)
  t.equal((await rpc(app, cookie, 'whoami')).json().code, 'SESSION_LOST')
})

test('a bodyless request that still says application/json', async (t) => {
  const { app } = await build(t)
  const cookie = await login(app, 'alice')
  const call = await app.inject({ method: 'POST', url: '/api/rpc/whoami', headers: { ...JSON_HEADERS, cookie } })
  t.equal(call.statusCode, 200, 'an RPC call without parameters')
  t.equal(call.json().result.user, 'alice')
  const loginNoBody = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS })
  t.equal(loginNoBody.statusCode, 400)
  t.equal(loginNoBody.json().code, 'BAD_REQUEST')
  const logout = await app.inject({ method: 'POST', url: '/api/logout', headers: { ...JSON_HEADERS, cookie } })
  t.equal(logout.statusCode, 204)
})

test('an answer over UPSTREAM_MAX_RESPONSE_BYTES is drained: 502, and the session goes on', async (t) => {
  const { app, sim } = await build(t, { env: { UPSTREAM_MAX_RESPONSE_BYTES: '2048' } })
  const cookie = await login(app, 'alice')
  const socket = (await rpc(app, cookie, 'whoami')).json().result.socket
  const big = await rpc(app, cookie, 'echo', ['x'.repeat(4000)])
  t.equal(big.statusCode, 502)
  t.equal(big.json().code, 'BAD_UPSTREAM_RESPONSE')
  const after = await rpc(app, cookie, 'whoami')
  t.equal(after.statusCode, 200)
  t.equal(after.json().result.socket, socket, 'same socket: the rest of the answer was read and dropped')
  t.equal(sim.sockets().filter(s => s.user === 'alice').length, 1)
})

test('a legacy answer with Connection: close ends the session it came on (the answer itself is delivered)', async (t) => {
  // Some legacy servers close after an answer (HTTP/1.0 style, or on their own errors).
  let closeAfter = new Set<string>()
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { body += c })
    req.on('end', () => {
      const method = /<methodName>([^<]*)<\/methodName>/.exec(body)?.[1] ?? ''
      res.writeHead(200, { 'content-type': 'text/xml', ...(closeAfter.has(method) ? { connection: 'close' } : {}) })
      res.end(encodeResponse(method === 'login' ? 'welcome' : `did ${method}`))
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const { port } = server.address() as AddressInfo
  const { app } = await build(t, { env: { LEGACY_URL: `http://127.0.0.1:${port}/RPC2` } })

  closeAfter = new Set(['login'])
  const refused = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'alice', password: 'alice' } })
  t.equal(refused.statusCode, 503, 'a login whose socket closes with its answer is no login')
  t.equal(refused.json().code, 'UPSTREAM_UNAVAILABLE')
  t.equal(app.sessions.size, 0, 'and leaves no session behind')

  closeAfter = new Set(['bye'])
  const cookie = await login(app, 'bob')
  const last = await rpc(app, cookie, 'bye')
  t.equal(last.statusCode, 200, 'the answer that came with Connection: close is delivered')
  t.same(last.json(), { result: 'did bye' })
  const after = await rpc(app, cookie, 'echo')
  t.equal(after.statusCode, 401)
  t.equal(after.json().code, 'SESSION_LOST', 'then the session is over: never a call on a new socket')
  t.equal(app.sessions.size, 0)
})

test('login, logout and system.multicall are the gateway\'s: 403 FORBIDDEN in any case, nothing sent, the session kept', async (t) => {
  const { app, sim } = await build(t)
  const cookie = await login(app, 'alice')
  const socket = (await rpc(app, cookie, 'whoami')).json().result.socket
  sim.clearLedger()
  const calls: Array<[string, unknown[]]> = [
    ['login', ['bob', 'bob']], ['LOGIN', ['bob', 'bob']], ['Login', ['bob', 'bob']],
    ['logout', []], ['LogOut', []],
    ['system.multicall', [[{ methodName: 'login', params: ['bob', 'bob'] }]]], ['System.MultiCall', [[]]]
  ]
  for (const [method, params] of calls) {
    const res = await rpc(app, cookie, method, params)
    t.equal(res.statusCode, 403, method)
    t.equal(res.json().code, 'FORBIDDEN', `${method}: FORBIDDEN`)
    t.match(res.json().message, /reserved to the gateway/)
  }
  t.same(sim.ledger, [], 'nothing reached the legacy server')
  const after = await rpc(app, cookie, 'whoami')
  t.equal(after.statusCode, 200, 'the next call works')
  t.same(after.json().result, { user: 'alice', socket }, 'on the same socket, still logged in as alice')
  const session = await app.inject({ url: '/api/session', headers: { cookie } })
  t.equal(session.json().user, 'alice')
})

test('the reserved names follow LEGACY_LOGIN_METHOD and LEGACY_LOGOUT_METHOD', async (t) => {
  const { app, sim } = await build(t, { env: { LEGACY_LOGOUT_METHOD: 'ping' } })
  const cookie = await login(app, 'alice')
  sim.clearLedger()
  const res = await rpc(app, cookie, 'PING')
  t.equal(res.statusCode, 403)
  t.equal(res.json().code, 'FORBIDDEN')
  t.same(sim.ledger, [])
  t.equal((await rpc(app, cookie, 'heartbeat')).statusCode, 200, 'other methods go through')
})
