import { test } from 'tap'
import { build, login, rpc, JSON_HEADERS } from './helper.js'
import { genReqId } from '../lib/logger.js'
import type { IncomingMessage } from 'node:http'

interface Line { msg?: string, reqId?: string, user?: string, reason?: string, req?: { url?: string }, [key: string]: unknown }

function capture (): { stream: { write: (line: string) => void }, text: () => string, lines: () => Line[] } {
  const chunks: string[] = []
  return {
    stream: { write: (line: string) => { chunks.push(line) } },
    text: () => chunks.join(''),
    lines: () => chunks.join('').split('\n').filter(Boolean).map(l => JSON.parse(l) as Line)
  }
}

/** Every value stored under a key named like `name`, at any depth. */
function valuesOf (value: unknown, name: RegExp, found: unknown[] = []): unknown[] {
  if (value !== null && typeof value === 'object') {
    for (const [key, inner] of Object.entries(value)) {
      if (name.test(key)) found.push(inner)
      valuesOf(inner, name, found)
    }
  }
  return found
}

test('the log carries user names and request ids, never passwords, cookies or session ids', async (t) => {
  const log = capture()
  // trace: whatever Fastify and the plugins log at any level is checked.
  const { app } = await build(t, { logStream: log.stream, env: { LOG_LEVEL: 'trace' } })
  const secretPassword = 'Tr0ub4dor&3-not-in-logs'

  const failed = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'alice', password: secretPassword } })
  t.equal(failed.statusCode, 401)
  const tooLong = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'alice', password: secretPassword.repeat(100) } })
  t.equal(tooLong.statusCode, 400)

  const cookie = await login(app, 'alice')
  const sessionId = /lg_sid=([^;]+)/.exec(cookie)?.[1] ?? ''
  t.ok(sessionId.length >= 43, 'got a session id')
  t.equal((await rpc(app, cookie, 'whoami')).statusCode, 200)
  t.equal((await rpc(app, cookie, 'fault', [4, 'refused'])).statusCode, 422)
  t.equal((await app.inject({ url: '/api/xml/xml/devices', headers: { cookie, authorization: 'Bearer token-not-in-logs' } })).statusCode, 200)
  t.equal((await app.inject({ url: '/api/session', headers: { cookie } })).statusCode, 200)
  const logout = await app.inject({ method: 'POST', url: '/api/logout', headers: { ...JSON_HEADERS, cookie }, payload: {} })
  t.equal(logout.statusCode, 204)
  t.equal((await rpc(app, cookie, 'whoami')).statusCode, 401, 'a call with the dead cookie is logged too')

  const text = log.text()
  t.ok(text.length > 0, 'something was logged')
  t.notOk(text.includes(secretPassword), 'no password')
  t.notOk(text.includes(sessionId), 'no session id')
  t.notOk(text.includes('lg_sid='), 'no cookie header or Set-Cookie')
  t.notOk(text.includes(cookie), 'no cookie header')
  t.notOk(text.includes('token-not-in-logs'), 'no authorization header')
  const passwords = valuesOf(log.lines(), /password/i)
  t.ok(passwords.every(v => v === '[redacted]'), 'any password field is redacted')

  const lines = log.lines()
  const opened = lines.find(l => l.msg === 'session opened')
  t.equal(opened?.user, 'alice', 'session opened: with its user')
  const ended = lines.find(l => l.msg === 'session ended')
  t.equal(ended?.user, 'alice', 'session ended: with its user')
  t.equal(ended?.reason, 'logout')
  t.ok(lines.some(l => l.msg === 'login' && l.user === 'alice'))
  t.ok(lines.some(l => l.msg === 'logout' && l.user === 'alice'))

  const requests = lines.filter(l => l.msg === 'incoming request')
  t.ok(requests.length >= 8, 'requests are logged')
  t.ok(requests.every(l => typeof l.reqId === 'string' && /^[0-9a-f-]{36}$/.test(l.reqId)), 'each with a generated UUID request id')
  t.equal(new Set(requests.map(l => l.reqId)).size, requests.length, 'one id per request')
})

test('request ids: echoed in x-request-id; a safe incoming one is kept, anything else replaced', async (t) => {
  const log = capture()
  const { app } = await build(t, { logStream: log.stream })
  const generated = await app.inject({ url: '/healthz' })
  t.match(generated.headers['x-request-id'], /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)

  const nginxId = '6f1e9c0d2b7a4e5f8a9b0c1d2e3f4a5b'
  const kept = await app.inject({ url: '/api/session', headers: { 'x-request-id': nginxId } })
  t.equal(kept.statusCode, 401)
  t.equal(kept.headers['x-request-id'], nginxId, 'echoed, on an error answer too')
  t.ok(log.lines().some(l => l.reqId === nginxId && l.msg === 'incoming request'), 'and used in the log')

  for (const bad of ['a b', 'x'.repeat(129), '<script>', '"quoted"', '-leading-dash', '']) {
    const res = await app.inject({ url: '/healthz', headers: { 'x-request-id': bad } })
    t.not(res.headers['x-request-id'], bad, `replaced: ${JSON.stringify(bad.slice(0, 20))}`)
    t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  }
  t.equal(genReqId({ headers: { 'x-request-id': 'req-1.2:3_4' } } as unknown as IncomingMessage), 'req-1.2:3_4')

  const notFound = await app.inject({ url: '/nope', headers: { 'x-request-id': 'trace-404' } })
  t.equal(notFound.statusCode, 404)
  t.equal(notFound.headers['x-request-id'], 'trace-404', 'on 404 too')
})

test('redaction: objects that carry secrets are censored by the shared logger options', async (t) => {
  const log = capture()
  const { app } = await build(t, { logStream: log.stream })
  app.log.info({
    password: 'pw-1',
    body: { username: 'alice', password: 'pw-2' },
    headers: { cookie: 'lg_sid=abc', authorization: 'Basic xyz' },
    req: { headers: { cookie: 'lg_sid=def' } },
    sessionId: 'sid-1',
    session: { sessionId: 'sid-2', user: 'alice' }
  }, 'an object with secrets')
  const text = log.text()
  for (const secret of ['pw-1', 'pw-2', 'lg_sid', 'Basic xyz', 'sid-1', 'sid-2']) {
    t.notOk(text.includes(secret), `${secret} is censored`)
  }
  t.ok(text.includes('"user":"alice"'), 'the rest stays')
})
