import t from 'tap'
import { decodeResponse, XmlRpcParseError } from '../../lib/xmlrpc.js'
import { eventually, pinnedClient, RawConnection, rpc, startSim, valueOf } from './helper.js'

const PING = '<?xml version="1.0"?><methodCall><methodName>ping</methodName></methodCall>'
const xmlHeaders = { 'content-type': 'text/xml' }

t.test('hang: no answer until the client gives up; counted in the ledger', async (t) => {
  const sim = await startSim(t)
  const conn = await RawConnection.open(t, sim)
  const { socket } = valueOf(await conn.rpc(sim, 'login', ['alice', 'alice'])) as { socket: number }
  sim.setFault({ mode: 'hang', count: 1 })
  conn.send('POST', '/RPC2', { headers: xmlHeaders, body: PING })
  t.equal(await conn.anythingWithin(300), false, 'nothing arrives')
  t.match(sim.ledger.at(-1), { socketId: socket, user: 'alice', method: 'ping', outcome: 'hang' })
  t.ok(sim.sockets().some((s) => s.id === socket), 'the socket stays open')

  conn.socket.destroy()
  await eventually(() => !sim.sockets().some((s) => s.id === socket))
  // count 1 is used up: a new socket gets answers again
  const next = await RawConnection.open(t, sim)
  t.match(await next.rpc(sim, 'ping'), { fault: true, faultCode: 2 })
})

t.test('malformed: 200 text/xml that does not parse', async (t) => {
  const sim = await startSim(t)
  const conn = await RawConnection.open(t, sim)
  valueOf(await conn.rpc(sim, 'login', ['alice', 'alice']))
  sim.setFault({ mode: 'malformed', count: 2 })
  for (let i = 0; i < 2; i++) {
    const res = await conn.request('POST', '/RPC2', { headers: xmlHeaders, body: PING })
    t.equal(res.status, 200)
    t.match(res.headers['content-type'], /^text\/xml/)
    t.throws(() => decodeResponse(res.body.toString()), XmlRpcParseError)
  }
  t.equal(valueOf(await conn.rpc(sim, 'ping')), true, 'back to normal after count answers')
  t.same(sim.ledger.slice(-3).map((e) => e.outcome), ['malformed', 'malformed', 'ok'])

  const xml = await conn.request('GET', '/xml/devices')
  t.equal(xml.status, 200, 'xml endpoints answer normally too')
  sim.setFault({ mode: 'malformed' })
  const broken = await conn.request('GET', '/xml/devices')
  t.not(broken.body.toString(), xml.body.toString())
  t.match(broken.body.toString(), /<devices/)
  t.equal(sim.state().fault.remaining, null, 'no count: until mode none')
  sim.setFault({ mode: 'none' })
  t.equal(valueOf(await conn.rpc(sim, 'ping')), true)
})

t.test('entity: a billion-laughs document', async (t) => {
  const sim = await startSim(t)
  const conn = await RawConnection.open(t, sim)
  valueOf(await conn.rpc(sim, 'login', ['alice', 'alice']))
  sim.setFault({ mode: 'entity', count: 2 })
  const res = await conn.request('POST', '/RPC2', { headers: xmlHeaders, body: PING })
  const text = res.body.toString()
  t.match(text, /<!DOCTYPE/)
  t.match(text, /<!ENTITY lol9 "(&lol8;){10}">/)
  t.ok(res.body.length < 4096, 'the document is small; only its expansion is huge')
  t.throws(() => decodeResponse(text), XmlRpcParseError)
  const xml = await conn.request('GET', '/xml/devices')
  t.match(xml.body.toString(), /<!DOCTYPE[\s\S]*&lol9;/)
  t.same(sim.ledger.slice(-2).map((e) => e.outcome), ['malformed', 'malformed'])
})

t.test('truncated: half a valid answer with a matching Content-Length', async (t) => {
  const sim = await startSim(t)
  const conn = await RawConnection.open(t, sim)
  valueOf(await conn.rpc(sim, 'login', ['alice', 'alice']))
  const whole = await conn.request('POST', '/RPC2', { headers: xmlHeaders, body: PING })
  sim.setFault({ mode: 'truncated', count: 1 })
  const res = await conn.request('POST', '/RPC2', { headers: xmlHeaders, body: PING })
  t.equal(Number(res.headers['content-length']), res.body.length)
  t.equal(res.body.length, Math.floor(whole.body.length / 2))
  t.same(res.body, whole.body.subarray(0, res.body.length))
  t.throws(() => decodeResponse(res.body.toString()), XmlRpcParseError)
  t.equal(sim.ledger.at(-1)?.outcome, 'malformed')
  t.equal(valueOf(await conn.rpc(sim, 'ping')), true, 'the socket is still usable')
})

t.test('slow: the right answer after delayMs', async (t) => {
  const sim = await startSim(t)
  const client = pinnedClient(t, sim)
  valueOf(await rpc(client, sim, 'login', ['alice', 'alice']))
  sim.setFault({ mode: 'slow', delayMs: 300, count: 1 })
  const started = Date.now()
  t.same(valueOf(await rpc(client, sim, 'whoami')), { user: 'alice', socket: sim.ledger[0]?.socketId })
  t.ok(Date.now() - started >= 290, 'delayed')
  t.equal(sim.ledger.at(-1)?.outcome, 'ok')
  const quick = Date.now()
  await rpc(client, sim, 'ping')
  t.ok(Date.now() - quick < 250, 'only count answers are slow')
})

t.test('close: the socket is destroyed without an answer', async (t) => {
  const sim = await startSim(t)
  const conn = await RawConnection.open(t, sim)
  valueOf(await conn.rpc(sim, 'login', ['alice', 'alice']))
  sim.setFault({ mode: 'close', count: 1 })
  await t.rejects(conn.request('POST', '/RPC2', { headers: xmlHeaders, body: PING }), /socket closed/)
  t.equal(sim.ledger.at(-1)?.outcome, 'error')

  const client = pinnedClient(t, sim)
  t.match(await rpc(client, sim, 'whoami'), { fault: true, faultCode: 2 }, 'count used up, login gone')
})

t.test('bad fault settings are refused', async (t) => {
  const sim = await startSim(t)
  t.throws(() => sim.setFault({ mode: 'explode' as 'hang' }), RangeError)
  t.throws(() => sim.setFault({ mode: 'hang', count: 0 }), RangeError)
  t.throws(() => sim.setFault({ mode: 'slow', delayMs: -1 }), RangeError)
  t.equal(sim.state().fault.mode, 'none')
})
