import t from 'tap'
import dgram from 'node:dgram'
import { decodeResponse } from '../../lib/xmlrpc.js'
import type { Simulator } from '../../sim/legacy.js'
import { connect, eventually, RawConnection, startSim, valueOf } from './helper.js'

async function call (sim: Simulator, method: string, path: string, body?: unknown): Promise<{ status: number, json: any }> {
  const res = await fetch(sim.controlUrl + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body)
  })
  return { status: res.status, json: await res.json() }
}

t.test('GET / lists the routes; GET /state', async (t) => {
  const sim = await startSim(t)
  const index = await call(sim, 'GET', '/')
  t.equal(index.status, 200)
  t.ok(index.json.some((r: { path: string }) => r.path === '/fault'))

  const conn = await RawConnection.open(t, sim)
  valueOf(await conn.rpc(sim, 'login', ['alice', 'alice']))
  const { status, json } = await call(sim, 'GET', '/state')
  t.equal(status, 200)
  t.match(json, {
    running: true,
    rpcUrl: sim.rpcUrl,
    controlUrl: sim.controlUrl,
    alarmUrl: sim.alarmUrl,
    sockets: [{ user: 'alice', open: true }],
    socketsClosed: 0,
    subscribers: [],
    alarmsSent: 0,
    ledger: 1,
    fault: { mode: 'none', remaining: 0 },
    charset: { charset: 'utf-8', declare: true, header: false },
    keepAliveHint: null
  })
})

t.test('GET /ledger, ?since, DELETE /ledger', async (t) => {
  const sim = await startSim(t)
  const conn = await RawConnection.open(t, sim)
  valueOf(await conn.rpc(sim, 'login', ['alice', 'alice']))
  await conn.rpc(sim, 'ping')
  await conn.request('GET', '/xml/devices')
  const all = await call(sim, 'GET', '/ledger')
  t.match(all.json, [{ seq: 1, method: 'login' }, { seq: 2, method: 'ping', user: 'alice' }, { seq: 3, kind: 'xml', method: 'GET /xml/devices' }])
  const later = await call(sim, 'GET', '/ledger?since=2')
  t.same(later.json.map((e: { seq: number }) => e.seq), [3])
  t.equal((await call(sim, 'GET', '/ledger?since=abc')).status, 400)
  t.same((await call(sim, 'DELETE', '/ledger')).json, { cleared: true })
  t.same((await call(sim, 'GET', '/ledger')).json, [])
})

t.test('POST /kill by user and by socket', async (t) => {
  const sim = await startSim(t)
  const a = await RawConnection.open(t, sim)
  const b = await RawConnection.open(t, sim)
  valueOf(await a.rpc(sim, 'login', ['alice', 'alice']))
  const { socket } = valueOf(await b.rpc(sim, 'login', ['bob', 'bob'])) as { socket: number }
  t.same((await call(sim, 'POST', '/kill', { user: 'alice' })).json, { killed: 1 })
  await a.closed
  t.same((await call(sim, 'POST', '/kill', { socket })).json, { killed: 1 })
  await b.closed
  t.same((await call(sim, 'POST', '/kill', { socket })).json, { killed: 0 })
  t.equal((await call(sim, 'POST', '/kill', {})).status, 400)
})

t.test('POST /stop and /start', async (t) => {
  const sim = await startSim(t)
  const { hostname, port } = new URL(sim.origin)
  t.same((await call(sim, 'POST', '/stop')).json, { running: false })
  await t.rejects(connect(Number(port), hostname), { code: 'ECONNREFUSED' })
  t.same((await call(sim, 'POST', '/start')).json, { running: true })
  const conn = await RawConnection.open(t, sim)
  t.match(valueOf(await conn.rpc(sim, 'login', ['demo', 'demo'])), { user: 'demo' })
})

t.test('POST /fault, /charset, /keepalive-hint, /reset', async (t) => {
  const sim = await startSim(t)
  const conn = await RawConnection.open(t, sim)
  valueOf(await conn.rpc(sim, 'login', ['alice', 'alice']))

  t.same((await call(sim, 'POST', '/fault', { mode: 'malformed', count: 1 })).json, { fault: { mode: 'malformed', remaining: 1, delayMs: 1000 } })
  const broken = await conn.request('POST', '/RPC2', { body: '<methodCall><methodName>ping</methodName></methodCall>' })
  t.throws(() => decodeResponse(broken.body.toString()))
  t.match((await call(sim, 'POST', '/fault', { mode: 'slow', delayMs: 5 })).json, { fault: { mode: 'slow', remaining: null, delayMs: 5 } })
  t.equal((await call(sim, 'POST', '/fault', { mode: 'bogus' })).status, 400)
  t.equal((await call(sim, 'POST', '/fault', { mode: 'hang', count: 'two' })).status, 400)
  t.equal((await call(sim, 'POST', '/fault', {})).status, 400)

  t.same((await call(sim, 'POST', '/charset', { charset: 'gbk', declare: false, header: true })).json, { charset: { charset: 'gbk', declare: false, header: true } })
  t.equal((await call(sim, 'POST', '/charset', { charset: 'nope-42' })).status, 400)
  t.same((await call(sim, 'POST', '/keepalive-hint', { seconds: 2 })).json, { keepAliveHint: 2 })
  const answer = await conn.request('GET', '/xml/device?id=p3')
  t.equal(answer.headers['keep-alive'], 'timeout=2')
  t.equal(answer.headers['content-type'], 'text/xml; charset=gbk')
  t.equal((await call(sim, 'POST', '/keepalive-hint', { seconds: 'x' })).status, 400)

  const reset = await call(sim, 'POST', '/reset')
  t.match(reset.json, { fault: { mode: 'none' }, charset: { charset: 'utf-8', declare: true, header: false }, keepAliveHint: null, ledger: 0 })
  const after = await conn.request('GET', '/xml/device?id=p3')
  t.equal(after.headers['keep-alive'], undefined)
  t.equal(after.headers['content-type'], 'text/xml')
})

t.test('POST /alarms, /alarm, /raw-alarm', async (t) => {
  const sim = await startSim(t)
  const socket = dgram.createSocket('udp4')
  const got: string[] = []
  socket.on('message', (m) => got.push(m.toString()))
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => socket.close(() => resolve())))
  const { hostname, port } = new URL(sim.alarmUrl)
  socket.send('SUBSCRIBE', Number(port), hostname)
  await eventually(() => sim.subscribers.length === 1)

  t.same((await call(sim, 'POST', '/alarms', { count: 3, level: 'warning' })).json, { sent: 3 })
  t.same((await call(sim, 'POST', '/alarm', { level: 'critical', source: 'pump-3', message: 'hi', code: 7 })).json, { sent: 1 })
  t.same((await call(sim, 'POST', '/raw-alarm', { text: 'garbage' })).json, { sent: 1 })
  t.same((await call(sim, 'POST', '/raw-alarm', { base64: Buffer.from('b64').toString('base64') })).json, { sent: 1 })
  await eventually(() => got.length === 6)
  t.ok(got.slice(0, 3).every((g) => g.includes('<level>warning</level>')))
  t.match(got[3], /<alarm><id>4<\/id><level>critical<\/level><source>pump-3<\/source><message>hi<\/message><code>7<\/code><\/alarm>/)
  t.same(got.slice(4), ['garbage', 'b64'])
  t.match((await call(sim, 'GET', '/state')).json, { alarmsSent: 6, subscribers: [{ address: '127.0.0.1' }] })

  t.equal((await call(sim, 'POST', '/alarms', { count: -1 })).status, 400)
  t.equal((await call(sim, 'POST', '/alarm', { nested: { no: 1 } })).status, 400)
  t.equal((await call(sim, 'POST', '/alarm', { 'bad name': 'x' })).status, 400)
  t.equal((await call(sim, 'POST', '/raw-alarm', {})).status, 400)
})

t.test('bad requests: bad JSON 400, unknown route 404, wrong method 405', async (t) => {
  const sim = await startSim(t)
  const bad = await call(sim, 'POST', '/fault', '{"mode":')
  t.equal(bad.status, 400)
  t.match(bad.json, { error: /JSON/ })
  t.equal((await call(sim, 'POST', '/fault', '[1]')).status, 400)
  t.equal((await call(sim, 'GET', '/nope')).status, 404)
  const wrong = await call(sim, 'GET', '/fault')
  t.equal(wrong.status, 405)
  t.equal(sim.ledger.length, 0, 'control calls are not in the RPC ledger')
})
