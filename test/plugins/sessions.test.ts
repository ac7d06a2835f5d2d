import { test } from 'tap'
import { build, JSON_HEADERS } from '../helper.js'

function setCookies (headers: Record<string, unknown>): string[] {
  const raw = headers['set-cookie']
  return raw === undefined ? [] : Array.isArray(raw) ? raw as string[] : [raw as string]
}

test('INSTANCE_NAME: login sets lg_inst for nginx, logout clears it', async (t) => {
  const { app } = await build(t, { env: { INSTANCE_NAME: 'gw1', COOKIE_SECURE: 'true' } })
  const failed = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'alice', password: 'wrong' } })
  t.equal(failed.statusCode, 401)
  t.same(setCookies(failed.headers), [], 'no cookie for a failed login')

  const ok = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'alice', password: 'alice' } })
  t.equal(ok.statusCode, 200)
  const inst = setCookies(ok.headers).find(c => c.startsWith('lg_inst='))
  t.ok(inst, 'lg_inst is set')
  const attrs = (inst ?? '').split(/;\s*/)
  t.equal(attrs[0], 'lg_inst=gw1')
  t.ok(attrs.includes('HttpOnly'))
  t.ok(attrs.includes('SameSite=Strict'))
  t.ok(attrs.includes('Path=/'))
  t.ok(attrs.includes('Secure'), 'Secure per COOKIE_SECURE')
  t.notOk(attrs.some(a => /^(Max-Age|Expires)=/i.test(a)), 'a browser-session cookie, like lg_sid')
  t.ok(setCookies(ok.headers).some(c => c.startsWith('lg_sid=')), 'beside the session cookie')

  const cookie = setCookies(ok.headers).map(c => c.split(';')[0]).join('; ')
  const out = await app.inject({ method: 'POST', url: '/api/logout', headers: { ...JSON_HEADERS, cookie }, payload: {} })
  t.equal(out.statusCode, 204)
  const cleared = setCookies(out.headers).find(c => c.startsWith('lg_inst='))
  t.match(cleared, /^lg_inst=;/, 'cleared at logout')
  t.match(cleared, /Max-Age=0|Expires=Thu, 01 Jan 1970/)
  t.match(cleared, /Path=\//)

  const other = await app.inject({ url: '/api/session', headers: { cookie } })
  t.same(setCookies(other.headers), [], 'other routes leave it alone')
})

test('without INSTANCE_NAME: no lg_inst', async (t) => {
  const { app } = await build(t)
  const ok = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'alice', password: 'alice' } })
  t.equal(ok.statusCode, 200)
  t.notOk(setCookies(ok.headers).some(c => c.startsWith('lg_inst=')))
})

test('request.getSession(): the session requireSession resolved; 401 UNAUTHENTICATED on a route without it', async (t) => {
  const { app } = await build(t, {
    plugin: async (fastify) => {
      fastify.get('/test/with', { onRequest: fastify.requireSession }, async (request) => ({ user: request.getSession().user }))
      // A route that forgot requireSession is refused in the contract's shape, not a 500.
      fastify.get('/test/without', async (request) => ({ user: request.getSession().user }))
    }
  })
  const ok = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'alice', password: 'alice' } })
  const cookie = setCookies(ok.headers).map(c => c.split(';')[0]).join('; ')

  const resolved = await app.inject({ url: '/test/with', headers: { cookie } })
  t.equal(resolved.statusCode, 200)
  t.same(resolved.json(), { user: 'alice' })
  t.equal((await app.inject({ url: '/test/with' })).json().code, 'UNAUTHENTICATED', 'requireSession refuses a request without a session')

  const forgot = await app.inject({ url: '/test/without', headers: { cookie } })
  t.equal(forgot.statusCode, 401)
  t.equal(forgot.json().code, 'UNAUTHENTICATED')
})
