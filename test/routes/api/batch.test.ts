import { test } from 'tap'
import { build, login, rpc, startSimulator, JSON_HEADERS } from '../../helper.js'
import { startHostileLegacy, httpAnswer, methodOf } from '../../hostile-legacy.js'

// Issue 18: GET /api/methods and POST /api/rpc batches.

async function batch (app: Awaited<ReturnType<typeof build>>['app'], cookie: string, payload: unknown): Promise<{ statusCode: number, json: () => any }> {
  return await app.inject({ method: 'POST', url: '/api/rpc', headers: { ...JSON_HEADERS, cookie }, payload: payload as object })
}

test('a batch is one system.multicall on the pinned socket; results in order, a fault does not stop the rest', async (t) => {
  const { app, sim } = await build(t)
  const cookie = await login(app, 'alice')
  sim.clearLedger()
  const calls = [
    { method: 'echo', params: ['a', 1] },
    { method: 'fault', params: [7, 'valve stuck'] },
    { method: 'whoami' },
    ...Array.from({ length: 7 }, (_v, i) => ({ method: 'echo', params: [i] }))
  ]
  const res = await batch(app, cookie, { calls })
  t.equal(res.statusCode, 200)
  const { results } = res.json()
  t.equal(results.length, 10)
  t.same(results[0], { result: ['a', 1] })
  t.same(results[1], { error: { statusCode: 422, code: 'RPC_FAULT', message: 'valve stuck', faultCode: 7 } })
  t.match(results[2], { result: { user: 'alice' } })
  t.same(results.slice(3), Array.from({ length: 7 }, (_v, i) => ({ result: [i] })))
  t.same(sim.ledger.map(e => e.method), ['system.multicall'], '10 calls, one legacy request')
  t.equal(new Set([...sim.ledger.map(e => e.socketId)]).size, 1)
  t.equal(sim.ledger[0]?.user, 'alice', 'on the session\'s own socket')
})

test('each call is checked against the policy: a refused one gets its own FORBIDDEN, the others run', async (t) => {
  const { app, sim } = await build(t, { env: { RPC_DENY: 'sleep' } })
  const cookie = await login(app, 'alice')
  sim.clearLedger()
  const res = await batch(app, cookie, { calls: [{ method: 'echo', params: [1] }, { method: 'sleep', params: [1] }, { method: 'login', params: ['bob', 'bob'] }, { method: 'system.multicall', params: [[]] }, { method: 'echo', params: [2] }] })
  t.equal(res.statusCode, 200)
  const { results } = res.json()
  t.same(results[0], { result: [1] })
  t.match(results[1], { error: { statusCode: 403, code: 'FORBIDDEN', message: /sleep may not be called/ } })
  t.match(results[2], { error: { statusCode: 403, code: 'FORBIDDEN', message: /reserved/ } })
  t.match(results[3], { error: { statusCode: 403, code: 'FORBIDDEN' } })
  t.same(results[4], { result: [2] })
  t.equal(sim.ledger.length, 1)
  const sent = sim.lastRpcRequest?.body.toString('utf8') ?? ''
  t.notMatch(sent, /sleep|login|<name>methodName<\/name><value><string>system\.multicall/, 'refused calls never reach the legacy server')
  t.match((await app.inject({ url: '/metrics' })).body, /^legacy_gateway_policy_refusals_total\{kind="rpc"\} 3$/m)
  const allRefused = await batch(app, cookie, { calls: [{ method: 'sleep', params: [1] }] })
  t.equal(allRefused.statusCode, 200)
  t.equal(sim.ledger.length, 1, 'a batch of refused calls sends nothing')
})

test('without multicall (auto learns it from the first attempt; false forces it) the calls run one after another on the same socket', async (t) => {
  for (const [mode, attempts] of [['auto', 1], ['false', 0]] as const) {
    await t.test(`LEGACY_MULTICALL=${mode}`, async (t) => {
      const sim = await startSimulator(t, { multicall: false })
      const { app } = await build(t, { sim, env: { LEGACY_MULTICALL: mode } })
      const cookie = await login(app, 'alice')
      sim.clearLedger()
      const calls = [{ method: 'echo', params: [1] }, { method: 'fault', params: [3, 'no'] }, { method: 'echo', params: [2] }]
      const first = await batch(app, cookie, { calls })
      t.equal(first.statusCode, 200)
      t.same(first.json().results, [{ result: [1] }, { error: { statusCode: 422, code: 'RPC_FAULT', message: 'no', faultCode: 3 } }, { result: [2] }])
      t.same(sim.ledger.map(e => e.method), [...Array(attempts).fill('system.multicall'), 'echo', 'fault', 'echo'])
      t.equal(new Set(sim.ledger.map(e => e.socketId)).size, 1, 'one socket')
      sim.clearLedger()
      t.equal((await batch(app, cookie, { calls })).statusCode, 200)
      t.same(sim.ledger.map(e => e.method), ['echo', 'fault', 'echo'], 'learned: no second attempt')
    })
  }
})

test('LEGACY_MULTICALL=true against a server without it: 502, the session goes on', async (t) => {
  const sim = await startSimulator(t, { multicall: false })
  const { app } = await build(t, { sim, env: { LEGACY_MULTICALL: 'true' } })
  const cookie = await login(app, 'alice')
  const res = await batch(app, cookie, { calls: [{ method: 'echo', params: [1] }] })
  t.equal(res.statusCode, 502)
  t.equal(res.json().code, 'BAD_UPSTREAM_RESPONSE')
  t.equal((await rpc(app, cookie, 'whoami')).statusCode, 200)
})

test('a malformed batch is 400 and sends nothing', async (t) => {
  const { app, sim } = await build(t, { env: { RPC_BATCH_MAX: '3' } })
  const cookie = await login(app, 'alice')
  sim.clearLedger()
  const bad: unknown[] = [
    {}, { calls: [] }, { calls: 'echo' }, { calls: [{ params: [] }] }, { calls: [{ method: 'bad name' }] },
    { calls: [{ method: 'echo', params: 'x' }] }, { calls: Array(4).fill({ method: 'echo' }) }, [{ method: 'echo' }],
    { calls: [{ method: 'echo', params: [1] }, { method: 'echo', params: ['\u0001'] }] }
  ]
  for (const payload of bad) {
    const res = await batch(app, cookie, payload)
    t.equal(res.statusCode, 400, JSON.stringify(payload))
    t.equal(res.json().code, 'BAD_REQUEST')
  }
  t.same(sim.ledger, [])
  const noSession = await app.inject({ method: 'POST', url: '/api/rpc', headers: JSON_HEADERS, payload: { calls: [{ method: 'echo' }] } })
  t.equal(noSession.statusCode, 401)
})

test('a multicall answer that does not match the calls sent is 502, never a partial match', async (t) => {
  for (const [name, answer] of [
    ['too few results', '<array><data><value><array><data><value><int>1</int></value></data></array></value></data></array>'],
    ['too many results', '<array><data>' + '<value><array><data><value><int>1</int></value></data></array></value>'.repeat(3) + '</data></array>'],
    ['a bare value instead of [value]', '<array><data><value><int>1</int></value><value><int>2</int></value></data></array>'],
    ['not an array', '<string>ok</string>']
  ] as const) {
    await t.test(name, async (t) => {
      const legacy = await startHostileLegacy(t, (req) => methodOf(req) === 'system.multicall'
        ? [httpAnswer(`<?xml version="1.0"?><methodResponse><params><param><value>${answer}</value></param></params></methodResponse>`)]
        : undefined)
      const { app } = await build(t, { env: { LEGACY_URL: legacy.url, LEGACY_MULTICALL: 'true' } })
      const cookie = await login(app, 'alice')
      const res = await batch(app, cookie, { calls: [{ method: 'a' }, { method: 'b' }] })
      t.equal(res.statusCode, 502)
      t.equal(res.json().code, 'BAD_UPSTREAM_RESPONSE')
      t.notOk('results' in res.json())
    })
  }
})

test('GET /api/methods: the methods the caller may call, with signatures and help; one fill serves everyone', async (t) => {
  const { app, sim } = await build(t, { env: { RPC_DENY: 'sleep,system.method*' } })
  const alice = await login(app, 'alice')
  const bob = await login(app, 'bob')
  sim.clearLedger()
  const [a, b] = await Promise.all([
    app.inject({ url: '/api/methods', headers: { cookie: alice } }),
    app.inject({ url: '/api/methods', headers: { cookie: bob } })
  ])
  t.equal(a.statusCode, 200)
  t.same(a.json(), b.json(), 'both askers get the same catalogue')
  const { introspection, methods } = a.json()
  t.equal(introspection, true)
  const names = methods.map((m: { name: string }) => m.name)
  t.same(names, ['whoami', 'echo', 'fault', 'heartbeat', 'ping', 'system.listMethods'], 'login, logout, multicall and denied methods are not listed')
  t.same(methods.find((m: { name: string }) => m.name === 'fault'), { name: 'fault', signatures: [['struct', 'int', 'string']], help: 'Always answers a fault with the given code and string.' })
  t.same(methods.find((m: { name: string }) => m.name === 'echo'), { name: 'echo', signatures: null, help: 'Returns its params as an array, types kept.' }, '"undef" is null')
  t.same(sim.ledger.map(e => e.method), ['system.listMethods', 'system.multicall'], 'one fill: the list, then every detail in one multicall')
  t.equal(new Set(sim.ledger.map(e => e.user)).size, 1, 'on one asker\'s socket')
  const again = await app.inject({ url: '/api/methods', headers: { cookie: bob } })
  t.same(again.json(), a.json())
  t.equal(sim.ledger.length, 2, 'cached: no second fill')
  t.equal((await app.inject({ url: '/api/methods' })).statusCode, 401)
})

test('a server without introspection gets {"introspection": false, "methods": []}, not an error; without multicall the details come one by one', async (t) => {
  await t.test('no introspection', async (t) => {
    const sim = await startSimulator(t, { introspection: false })
    const { app } = await build(t, { sim })
    const cookie = await login(app, 'alice')
    const res = await app.inject({ url: '/api/methods', headers: { cookie } })
    t.equal(res.statusCode, 200)
    t.same(res.json(), { introspection: false, methods: [] })
    t.equal((await rpc(app, cookie, 'whoami')).statusCode, 200, 'the session goes on')
  })
  await t.test('introspection without multicall', async (t) => {
    const sim = await startSimulator(t, { multicall: false })
    const { app } = await build(t, { sim })
    const cookie = await login(app, 'alice')
    sim.clearLedger()
    const res = await app.inject({ url: '/api/methods', headers: { cookie } })
    t.equal(res.statusCode, 200)
    t.match(res.json().methods.find((m: { name: string }) => m.name === 'sleep'), { signatures: [['int', 'int']], help: /milliseconds/ })
    t.equal(sim.ledger[0]?.method, 'system.listMethods')
    t.ok(sim.ledger.slice(1).every(e => e.method === 'system.methodSignature' || e.method === 'system.methodHelp'), 'details one by one')
    // Known from the catalogue: a batch goes call by call without trying multicall first.
    sim.clearLedger()
    t.equal((await batch(app, cookie, { calls: [{ method: 'echo' }, { method: 'echo' }] })).statusCode, 200)
    t.same(sim.ledger.map(e => e.method), ['echo', 'echo'])
  })
})
