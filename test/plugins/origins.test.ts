import { test } from 'tap'
import type { Test } from 'tap'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { build, login, rpc, JSON_HEADERS } from '../helper.js'
import type { Simulator } from '../../sim/legacy.js'

// The gateway as the browser addresses it in these requests (inject sends this Host).
const HOST = 'gw.example.com'
const OWN = `http://${HOST}`

type Method = 'POST' | 'PUT' | 'DELETE' | 'PATCH'
/** `ok`: its answer once past the guard (DELETE is the simulator's own 405). */
interface Write { method: Method, url: string, payload?: string, json?: boolean, ok: number, what: string }

// One of each state-changing route; every one may reach the legacy server or end the session.
const WRITES: Write[] = [
  { method: 'POST', url: '/api/logout', ok: 204, what: 'logout, bodyless' },
  { method: 'POST', url: '/api/rpc/whoami', ok: 200, what: 'a zero-argument call, bodyless' },
  { method: 'POST', url: '/api/rpc/echo', payload: '["x"]', json: true, ok: 200, what: 'a call with a JSON body' },
  { method: 'POST', url: '/api/login', payload: '{"username":"mallory","password":"mallory"}', json: true, ok: 200, what: 'login' },
  { method: 'PUT', url: '/api/xml/xml/echo', payload: '{"order":"1"}', json: true, ok: 200, what: 'an XML endpoint' },
  { method: 'DELETE', url: '/api/xml/xml/echo', ok: 405, what: 'an XML endpoint, DELETE' }
]

function inject (w: Write, cookie: string, headers: Record<string, string>): InjectOptions {
  return {
    method: w.method,
    url: w.url,
    headers: { host: HOST, cookie, ...(w.json === true ? JSON_HEADERS : {}), ...headers },
    ...(w.payload !== undefined ? { payload: w.payload } : {})
  }
}

/** Every write with these headers is 403 FORBIDDEN, reaches nothing, and leaves the session as it was. */
async function forbidden (t: Test, app: FastifyInstance, sim: Simulator, cookie: string, headers: Record<string, string>, message: RegExp): Promise<void> {
  const socket = (await rpc(app, cookie, 'whoami')).json().result.socket as number
  const sessions = app.sessions.size
  const before = sim.ledger.length
  for (const w of WRITES) {
    const res = await app.inject(inject(w, cookie, headers))
    t.equal(res.statusCode, 403, `${w.what}: 403`)
    t.equal(res.json().code, 'FORBIDDEN', `${w.what}: FORBIDDEN`)
    t.match(res.json().message, message, `${w.what}: says why`)
    t.equal(res.headers['set-cookie'], undefined, `${w.what}: no cookie set or cleared`)
  }
  t.equal(sim.ledger.length, before, 'nothing reached the legacy server')
  t.equal(app.sessions.size, sessions, 'no session opened or ended')
  const after = await rpc(app, cookie, 'whoami')
  t.equal(after.statusCode, 200, 'the session is alive')
  t.equal(after.json().result.socket, socket, 'on its socket')
}

/** Every write with these headers gets past the guard: it reaches the legacy server and gets its route's answer. */
async function passes (t: Test, app: FastifyInstance, sim: Simulator, headers: Record<string, string>): Promise<void> {
  for (const w of WRITES) {
    const cookie = await login(app, 'alice')
    const before = sim.ledger.length
    const res = await app.inject(inject(w, cookie, headers))
    t.equal(res.statusCode, w.ok, `${w.what}: ${w.ok}`)
    t.ok(sim.ledger.length > before, `${w.what}: reached the legacy server`)
  }
}

test('Sec-Fetch-Site cross-site or same-site: every write is 403 before it reaches anything', async (t) => {
  const { app, sim } = await build(t)
  const cookie = await login(app, 'alice')
  await forbidden(t, app, sim, cookie, { 'sec-fetch-site': 'cross-site' }, /another site \(Sec-Fetch-Site: cross-site\)/)
  // A sibling subdomain: SameSite=Strict lets the cookie through, the guard does not.
  await forbidden(t, app, sim, cookie, { 'sec-fetch-site': 'same-site', origin: 'http://evil.example.com' }, /same site \(Sec-Fetch-Site: same-site\)/)
  await forbidden(t, app, sim, cookie, { 'sec-fetch-site': 'same-site', origin: OWN }, /same-site/)
  await forbidden(t, app, sim, cookie, { 'sec-fetch-site': 'cross-origin' }, /not a value browsers send/)
})

test('a foreign Origin or Origin null: every write is 403, bodyless ones included', async (t) => {
  const { app, sim } = await build(t)
  const cookie = await login(app, 'alice')
  // What an old browser sends for fetch(url, { method: 'POST', mode: 'no-cors', credentials: 'include' }).
  await forbidden(t, app, sim, cookie, { origin: 'http://evil.example.com' },
    /^Origin http:\/\/evil\.example\.com is neither the gateway's own \(http:\/\/gw\.example\.com\) nor in ALLOWED_ORIGINS/)
  await forbidden(t, app, sim, cookie, { origin: 'null' }, /^Origin null .* is not the gateway's own/)
  await forbidden(t, app, sim, cookie, { 'sec-fetch-site': 'same-origin', origin: 'http://evil.example.com' }, /is neither the gateway's own/)
  await forbidden(t, app, sim, cookie, { origin: 'https://gw.example.com' }, /neither the gateway's own/)
  await forbidden(t, app, sim, cookie, { origin: 'http://gw.example.com:8080' }, /neither the gateway's own/)
})

test('judged before the body is parsed and before the session is looked up', async (t) => {
  const { app, sim } = await build(t)
  const before = sim.ledger.length
  const cases: Array<[string, InjectOptions]> = [
    ['no session (else 401)', { method: 'POST', url: '/api/rpc/whoami', headers: { host: HOST, origin: 'http://evil.example.com' } }],
    ['a forged session (else 401)', { method: 'POST', url: '/api/rpc/whoami', headers: { host: HOST, cookie: 'lg_sid=' + 'A'.repeat(43), 'sec-fetch-site': 'cross-site' } }],
    ['text/plain (else 415)', { method: 'POST', url: '/api/logout', headers: { host: HOST, 'content-type': 'text/plain', 'sec-fetch-site': 'cross-site' }, payload: 'x' }],
    ['unparseable JSON (else 400)', { method: 'POST', url: '/api/login', headers: { host: HOST, ...JSON_HEADERS, origin: 'null' }, payload: '{' }],
    ['an unknown route (else 404)', { method: 'POST', url: '/nope', headers: { host: HOST, 'sec-fetch-site': 'cross-site' } }]
  ]
  for (const [what, req] of cases) {
    const res = await app.inject(req)
    t.equal(res.statusCode, 403, what)
    t.equal(res.json().code, 'FORBIDDEN', what)
  }
  t.equal(sim.ledger.length, before)
})

test('same-origin, Sec-Fetch-Site none, and requests without either header pass', async (t) => {
  const { app, sim } = await build(t)
  await passes(t, app, sim, { 'sec-fetch-site': 'same-origin', origin: OWN })
  await passes(t, app, sim, { 'sec-fetch-site': 'same-origin' })
  await passes(t, app, sim, { 'sec-fetch-site': 'none' })
  await passes(t, app, sim, { origin: OWN })
  await passes(t, app, sim, {}) // curl, a server
})

test('ALLOWED_ORIGINS: a listed Origin passes; * passes any', async (t) => {
  const { app, sim } = await build(t, { env: { ALLOWED_ORIGINS: 'https://ops.example.com' } })
  await passes(t, app, sim, { origin: 'https://ops.example.com' })
  await passes(t, app, sim, { origin: OWN }) // the gateway's own stays allowed for writes
  const cookie = await login(app, 'alice')
  await forbidden(t, app, sim, cookie, { origin: 'https://evil.example.com' }, /nor in ALLOWED_ORIGINS/)
  // Fetch Metadata is judged first: a listed origin on another site still says cross-site.
  await forbidden(t, app, sim, cookie, { origin: 'https://ops.example.com', 'sec-fetch-site': 'cross-site' }, /cross-site/)

  const any = await build(t, { env: { ALLOWED_ORIGINS: '*' } })
  await passes(t, any.app, any.sim, { origin: 'https://anyone.example.net' })
  await passes(t, any.app, any.sim, { origin: 'null' })
})

test('behind a proxy the own origin comes from X-Forwarded-Proto and -Host, with TRUST_PROXY only', async (t) => {
  const forwarded = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'gateway.example.com', origin: 'https://gateway.example.com' }
  const proxied = await build(t, { env: { TRUST_PROXY: '127.0.0.1' } })
  await passes(t, proxied.app, proxied.sim, forwarded)
  const cookie = await login(proxied.app, 'alice')
  await forbidden(t, proxied.app, proxied.sim, cookie, { ...forwarded, origin: 'http://gateway.example.com' }, /own \(https:\/\/gateway\.example\.com\)/)

  const direct = await build(t)
  const directCookie = await login(direct.app, 'alice')
  await forbidden(t, direct.app, direct.sim, directCookie, forwarded, /own \(http:\/\/gw\.example\.com\)/)
})

test('GET and HEAD are not judged', async (t) => {
  const { app, sim } = await build(t)
  const cookie = await login(app, 'alice')
  const foreign = { host: HOST, cookie, origin: 'http://evil.example.com', 'sec-fetch-site': 'cross-site' }
  const session = await app.inject({ url: '/api/session', headers: foreign })
  t.equal(session.statusCode, 200, 'GET /api/session')
  const before = sim.ledger.length
  const devices = await app.inject({ url: '/api/xml/xml/devices', headers: foreign })
  t.equal(devices.statusCode, 200, 'GET /api/xml/…')
  const head = await app.inject({ method: 'HEAD', url: '/api/xml/xml/devices', headers: foreign })
  t.equal(head.statusCode, 200, 'HEAD /api/xml/…')
  t.equal(sim.ledger.length, before + 2)
  t.equal((await app.inject({ url: '/healthz', headers: foreign })).statusCode, 200)
})
