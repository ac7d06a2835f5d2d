import { test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { build, eventually, login, rpc, startSimulator, JSON_HEADERS } from '../../helper.js'

// Issue 15, "Fit a real site": the login's own shape, the method and path policy, the audit trail.

const STRUCT_LOGIN = '[{"user":"{{username}}","pwd":"{{password}}"},"web",3]'

function capture (): { stream: { write: (line: string) => void }, text: () => string, lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = []
  return {
    stream: { write: (line: string) => { chunks.push(line) } },
    text: () => chunks.join(''),
    lines: () => chunks.join('').split('\n').filter(Boolean).map(l => JSON.parse(l) as Record<string, unknown>)
  }
}

test('a login through LEGACY_LOGIN_PARAMS reaches the legacy server with the exact types', async (t) => {
  const sim = await startSimulator(t, { loginShape: 'struct' })
  const { app } = await build(t, { sim, env: { LEGACY_LOGIN_PARAMS: STRUCT_LOGIN, LEGACY_LOGOUT_PARAMS: '["{{username}}",{"reason":"web"}]' } })
  const res = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: '1234', password: '1234' } })
  t.equal(res.statusCode, 200, 'the struct login is accepted')
  t.equal(res.json().user, '1234')
  const sent = sim.lastRpcRequest?.body.toString('utf8') ?? ''
  t.equal(sent.replace(/^<\?xml[^>]*\?>/, ''),
    '<methodCall><methodName>login</methodName><params>' +
    '<param><value><struct><member><name>user</name><value><string>1234</string></value></member>' +
    '<member><name>pwd</name><value><string>1234</string></value></member></struct></value></param>' +
    '<param><value><string>web</string></value></param><param><value><int>3</int></value></param></params></methodCall>',
    'a struct of strings (digits stay strings), a string and an <int>')
  const cookie = res.headers['set-cookie']?.toString().split(';')[0] ?? ''
  const whoami = await rpc(app, cookie, 'whoami')
  t.equal(whoami.json().result.user, '1234', 'the session is logged in on its socket')

  const logout = await app.inject({ method: 'POST', url: '/api/logout', headers: { ...JSON_HEADERS, cookie } })
  t.equal(logout.statusCode, 204)
  t.match(sim.lastRpcRequest?.body.toString('utf8'),
    /<methodName>logout<\/methodName><params><param><value><string>1234<\/string><\/value><\/param><param><value><struct><member><name>reason<\/name><value><string>web<\/string>/,
    'the logout went with its template, the user name filled in')
})

test('the default login is login(username, password): a struct-login server refuses it, a positional one accepts it', async (t) => {
  const sim = await startSimulator(t, { loginShape: 'struct' })
  const { app } = await build(t, { sim })
  const res = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'alice', password: 'alice' } })
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'LOGIN_FAILED')
  t.equal(app.sessions.size, 0)
})

test('the heartbeat goes with LEGACY_HEARTBEAT_PARAMS', async (t) => {
  const { app, sim } = await build(t, { env: { LEGACY_HEARTBEAT_METHOD: 'heartbeat', LEGACY_HEARTBEAT_MS: '60', LEGACY_HEARTBEAT_PARAMS: '[{"client":"web","user":"{{username}}"}]' } })
  await login(app, 'alice')
  t.ok(await eventually(() => sim.ledger.some(e => e.method === 'heartbeat')), 'a heartbeat went out')
  t.match(sim.lastRpcRequest?.body.toString('utf8'), /<methodName>heartbeat<\/methodName><params><param><value><struct><member><name>client<\/name><value><string>web<\/string><\/value><\/member><member><name>user<\/name><value><string>alice<\/string>/)
})

test('the password never appears in logs, metrics or error messages', async (t) => {
  const log = capture()
  const sim = await startSimulator(t, { loginShape: 'struct' })
  const secret = 'S3cret-Pass-not-in-logs'
  const { app } = await build(t, { sim, logStream: log.stream, env: { LOG_LEVEL: 'trace', LEGACY_LOGIN_PARAMS: STRUCT_LOGIN, AUDIT_LOG: 'true' } })
  const failed = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'alice', password: secret } })
  t.equal(failed.statusCode, 401)
  t.notMatch(failed.body, secret)
  // A control character cannot be written in XML: the error says where, not what.
  const unwritable = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'alice', password: `${secret}\u0001` } })
  t.equal(unwritable.statusCode, 400)
  t.notMatch(unwritable.body, secret)
  const metrics = await app.inject({ url: '/metrics' })
  t.notMatch(metrics.body, secret)
  t.ok(log.lines().length > 0, 'there were log lines')
  t.notMatch(log.text(), secret, 'not in any log line')
})

test('a denied method is 403 FORBIDDEN before anything reaches the legacy server; the session goes on', async (t) => {
  const { app, sim } = await build(t, { env: { RPC_ALLOW: 'who*,echo,device.*', RPC_DENY: 'echo,device.reboot' } })
  const cookie = await login(app, 'alice')
  sim.clearLedger()
  const cases: Array<[string, string]> = [
    ['echo', 'deny beats allow'],
    ['ECHO', 'deny is case-blind'],
    ['device.reboot', 'a denied method under an allowed pattern'],
    ['Device.Reboot', 'in another letter case'],
    ['sleep', 'not on the allow list'],
    ['Whoami', 'allow is exact'],
    ['login', 'the login method stays refused'],
    ['logout', 'the logout method stays refused'],
    ['system.multicall', 'multicall stays refused']
  ]
  for (const [method, why] of cases) {
    const res = await rpc(app, cookie, method, ['x'])
    t.equal(res.statusCode, 403, `${method}: ${why}`)
    t.equal(res.json().code, 'FORBIDDEN')
    t.same(Object.keys(res.json()).sort(), ['code', 'error', 'message', 'statusCode'])
  }
  t.same(sim.ledger, [], 'the legacy server saw no call')
  const ok = await rpc(app, cookie, 'whoami')
  t.equal(ok.statusCode, 200, 'the session is untouched')
  t.equal(ok.json().result.user, 'alice')
  t.equal(sim.ledger.length, 1)
  const metrics = (await app.inject({ url: '/metrics' })).body
  t.match(metrics, /^legacy_gateway_policy_refusals_total\{kind="rpc"\} 9$/m, 'refusals counted by kind')
  t.match(metrics, /^legacy_gateway_policy_refusals_total\{kind="xml"\} 0$/m)
  t.notMatch(metrics, /reboot/i, 'never a method name as a label')
})

test('a method name outside the contract\'s characters is still 400, whatever the lists', async (t) => {
  const { app } = await build(t, { env: { RPC_ALLOW: 'whoami' } })
  const cookie = await login(app, 'alice')
  const res = await rpc(app, cookie, 'who%20ami')
  t.equal(res.statusCode, 400)
  t.equal(res.json().code, 'BAD_REQUEST')
})

test('without a session a denied method is 401, not 403: the policy is not shown to strangers', async (t) => {
  const { app } = await build(t, { env: { RPC_DENY: 'echo' } })
  const res = await app.inject({ method: 'POST', url: '/api/rpc/echo', headers: JSON_HEADERS, payload: [] })
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'UNAUTHENTICATED')
})

test('a denied path is 403 before anything is sent, in every spelling; allowed paths still work', async (t) => {
  const { app, sim } = await build(t, { env: { XML_ALLOW: '/xml/*,/public/*', XML_DENY: '/xml/device,/xml/device/*,/xml/echo' } })
  const cookie = await login(app, 'alice')
  sim.clearLedger()
  const refused = [
    '/api/xml/xml/device?id=1', '/api/xml/xml/device/', '/api/xml//xml/device', '/api/xml/xml/./device',
    '/api/xml/public/%2e%2e/xml/device', '/api/xml/public/%2E%2E/xml/echo', '/api/xml/xml/%64evice',
    '/api/xml/XML/Device', '/api/xml/xml/device;x=1', '/api/xml/xml/echo.', '/api/xml/xml/device%252F1',
    '/api/xml/other', '/api/xml/RPC2', '/api/xml/rpc2;x'
  ]
  for (const url of refused) {
    const res = await app.inject({ url, headers: { cookie } })
    t.equal(res.statusCode, 403, `${url} is refused`)
    t.equal(res.json().code, 'FORBIDDEN')
  }
  const post = await app.inject({ method: 'POST', url: '/api/xml/public/../xml/echo', headers: { ...JSON_HEADERS, cookie }, payload: { a: '1' } })
  t.equal(post.statusCode, 403, 'a body is not read for a refused path')
  t.same(sim.ledger, [], 'the legacy server saw nothing')

  const devices = await app.inject({ url: '/api/xml/xml/devices', headers: { cookie } })
  t.equal(devices.statusCode, 200, 'an allowed path passes')
  t.equal(sim.ledger.length, 1)
  t.equal((await rpc(app, cookie, 'whoami')).statusCode, 200, 'the session is untouched')
  const metrics = (await app.inject({ url: '/metrics' })).body
  t.match(metrics, new RegExp(`^legacy_gateway_policy_refusals_total\\{kind="xml"\\} ${refused.length + 1}$`, 'm'))
})

test('AUDIT_LOG: one line per browser-initiated legacy call, refusals included, never params, bodies or cookies', async (t) => {
  const log = capture()
  // LOG_LEVEL=warn: the audit trail is written all the same.
  const { app } = await build(t, { logStream: log.stream, env: { LOG_LEVEL: 'warn', AUDIT_LOG: 'true', RPC_DENY: 'sleep', XML_DENY: '/xml/echo' } })
  const failed = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'mallory', password: 'pw-not-in-audit' } })
  t.equal(failed.statusCode, 401)
  const cookie = await login(app, 'alice')
  const secretParam = 'param-not-in-audit'
  t.equal((await rpc(app, cookie, 'echo', [secretParam])).statusCode, 200)
  t.equal((await rpc(app, cookie, 'fault', [7, 'nope'])).statusCode, 422)
  t.equal((await rpc(app, cookie, 'sleep', [1])).statusCode, 403)
  t.equal((await app.inject({ url: '/api/xml/xml/devices?token=query-not-in-audit', headers: { cookie } })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/api/xml/xml/echo', headers: { ...JSON_HEADERS, cookie }, payload: { a: 'body-not-in-audit' } })).statusCode, 403)
  t.equal((await app.inject({ url: '/api/session', headers: { cookie } })).statusCode, 200, 'not a legacy call: not audited')
  t.equal((await rpc(app, 'lg_sid=forged', 'echo')).statusCode, 401, 'no session: not audited')
  t.equal((await app.inject({ method: 'POST', url: '/api/logout', headers: { ...JSON_HEADERS, cookie } })).statusCode, 204)

  t.ok(await eventually(() => log.lines().filter(l => l.audit === true).length >= 8), 'the lines were written')
  const audit = log.lines().filter(l => l.audit === true)
  const pick = (l: Record<string, unknown>): Record<string, unknown> => {
    const { kind, user, method, httpMethod, path, outcome, statusCode } = l
    return Object.fromEntries(Object.entries({ kind, user, method, httpMethod, path, outcome, statusCode }).filter(([, v]) => v !== undefined))
  }
  t.same(audit.map(pick), [
    { kind: 'login', user: 'mallory', outcome: 'LOGIN_FAILED', statusCode: 401 },
    { kind: 'login', user: 'alice', outcome: 'ok', statusCode: 200 },
    { kind: 'rpc', user: 'alice', method: 'echo', outcome: 'ok', statusCode: 200 },
    { kind: 'rpc', user: 'alice', method: 'fault', outcome: 'RPC_FAULT', statusCode: 422 },
    { kind: 'rpc', user: 'alice', method: 'sleep', outcome: 'FORBIDDEN', statusCode: 403 },
    { kind: 'xml', user: 'alice', httpMethod: 'GET', path: '/xml/devices', outcome: 'ok', statusCode: 200 },
    { kind: 'xml', user: 'alice', httpMethod: 'POST', path: '/xml/echo', outcome: 'FORBIDDEN', statusCode: 403 },
    { kind: 'logout', user: 'alice', outcome: 'ok', statusCode: 204 }
  ])
  for (const line of audit) {
    t.equal(typeof line.ms, 'number', 'a duration')
    t.match(line.reqId, /\S/, 'a request id')
    t.equal(line.ip, '127.0.0.1', 'the browser\'s address')
    t.equal(line.level, 30)
  }
  const text = JSON.stringify(audit)
  for (const secret of ['pw-not-in-audit', secretParam, 'query-not-in-audit', 'body-not-in-audit', 'lg_sid', 'nope']) {
    t.notMatch(text, secret, `${secret} is not in the audit trail`)
  }
  t.notOk(log.lines().some(l => l.audit !== true && l.level === 30), 'LOG_LEVEL=warn still holds for everything else')
})

test('without AUDIT_LOG there is no audit line', async (t) => {
  const log = capture()
  const { app } = await build(t, { logStream: log.stream })
  const cookie = await login(app, 'alice')
  t.equal((await rpc(app, cookie, 'whoami')).statusCode, 200)
  await sleep(20)
  t.ok(log.lines().length > 0)
  t.notOk(log.lines().some(l => 'audit' in l))
})
