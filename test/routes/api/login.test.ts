import { test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { build, JSON_HEADERS } from '../../helper.js'

// What a failed login is answered with, by how the login call failed (SessionStore.login): the
// legacy server's refusal is LOGIN_FAILED, a timeout, an unusable answer and a password that
// cannot be sent keep their own code, anything else is UPSTREAM_UNAVAILABLE. No session is
// opened and no socket is left open.

test('a failed login is answered by how the login call failed', async (t) => {
  const { app, sim } = await build(t, { env: { LEGACY_TIMEOUT_MS: '300' } })
  const loginAs = async (username: string, password = username): Promise<{ status: number, code: string, message: string }> => {
    const res = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username, password } })
    const body = res.json()
    return { status: res.statusCode, code: body.code, message: body.message }
  }

  t.match(await loginAs('alice', 'wrong'), { status: 401, code: 'LOGIN_FAILED', message: /^Login refused by the legacy server: / }, 'a fault')

  sim.setFault({ mode: 'malformed', count: 1 })
  t.match(await loginAs('bob'), { status: 502, code: 'BAD_UPSTREAM_RESPONSE' }, 'a malformed answer')
  sim.setFault({ mode: 'entity', count: 1 })
  t.match(await loginAs('bob'), { status: 502, code: 'BAD_UPSTREAM_RESPONSE' }, 'a hostile answer')

  sim.setFault({ mode: 'hang', count: 1 })
  t.match(await loginAs('carol'), { status: 504, code: 'UPSTREAM_TIMEOUT' }, 'no answer')

  const before = sim.ledger.length
  t.match(await loginAs('dave', 'bell\u0007'), { status: 400, code: 'BAD_REQUEST', message: /^params cannot be sent as XML-RPC/ }, 'a password XML cannot carry')
  t.equal(sim.ledger.length, before, '(nothing was sent)')

  sim.setFault({ mode: 'close', count: 1 })
  t.match(await loginAs('erin'), {
    status: 503,
    code: 'UPSTREAM_UNAVAILABLE',
    message: 'The legacy server cannot be reached: the connection closed before the login was answered'
  }, 'the socket closed before the answer')

  await sim.stop()
  const refused = await loginAs('frank')
  t.match(refused, { status: 503, code: 'UPSTREAM_UNAVAILABLE', message: /ECONNREFUSED/ }, 'connection refused')
  t.notMatch(refused.message, /cannot be reached.*cannot be reached/, 'said once')
  await sim.start()

  t.equal(app.sessions.size, 0, 'no session was opened')
  await sleep(50)
  t.equal(sim.sockets().filter(s => s.open).length, 0, 'no socket is left open')
  t.match(await loginAs('alice'), { status: 200 }, 'and a good login still works')
})
