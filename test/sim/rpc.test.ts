import t from 'tap'
import { encodeCall } from '../../lib/xmlrpc.js'
import { MOTD } from '../../sim/legacy.js'
import { eventually, pinnedClient, RawConnection, rpc, startSim, valueOf } from './helper.js'

t.test('login binds the socket: another connection is not logged in', async (t) => {
  const sim = await startSim(t)
  const alice = pinnedClient(t, sim)
  const other = pinnedClient(t, sim)

  const login = valueOf(await rpc(alice, sim, 'login', ['alice', 'alice'])) as { user: string, socket: number, motd: string }
  t.equal(login.user, 'alice')
  t.equal(login.motd, MOTD)
  t.same(valueOf(await rpc(alice, sim, 'whoami')), { user: 'alice', socket: login.socket })

  const stranger = await rpc(other, sim, 'whoami')
  t.match(stranger, { fault: true, faultCode: 2, faultString: 'not logged in' })
})

t.test('two users on two sockets each see themselves; the ledger records sockets and users', async (t) => {
  const sim = await startSim(t)
  const alice = pinnedClient(t, sim)
  const bob = pinnedClient(t, sim)
  const a = valueOf(await rpc(alice, sim, 'login', ['alice', 'alice'])) as { socket: number }
  const b = valueOf(await rpc(bob, sim, 'login', ['bob', 'bob'])) as { socket: number }
  t.not(a.socket, b.socket)

  t.same(valueOf(await rpc(bob, sim, 'whoami')), { user: 'bob', socket: b.socket })
  t.same(valueOf(await rpc(alice, sim, 'whoami')), { user: 'alice', socket: a.socket })

  t.match(sim.ledger, [
    { seq: 1, socketId: a.socket, user: null, kind: 'rpc', method: 'login', outcome: 'ok' },
    { seq: 2, socketId: b.socket, user: null, kind: 'rpc', method: 'login', outcome: 'ok' },
    { seq: 3, socketId: b.socket, user: 'bob', kind: 'rpc', method: 'whoami', outcome: 'ok' },
    { seq: 4, socketId: a.socket, user: 'alice', kind: 'rpc', method: 'whoami', outcome: 'ok' }
  ])
  t.equal(sim.ledger.length, 4)
  t.same(sim.sockets().map((s) => [s.id, s.user, s.open]).sort(), [[a.socket, 'alice', true], [b.socket, 'bob', true]])

  sim.clearLedger()
  t.equal(sim.ledger.length, 0)
})

t.test('a socket bound to one user cannot log in as another; the same user may log in again', async (t) => {
  const sim = await startSim(t)
  const client = pinnedClient(t, sim)
  valueOf(await rpc(client, sim, 'login', ['alice', 'alice']))
  t.match(await rpc(client, sim, 'login', ['bob', 'bob']), { fault: true, faultCode: 3, faultString: 'socket already bound to another user' })
  t.match(valueOf(await rpc(client, sim, 'login', ['alice', 'alice'])), { user: 'alice' })
  t.match(sim.ledger.map((e) => e.outcome), ['ok', 'fault', 'ok'])
})

t.test('wrong password faults and leaves the socket logged out', async (t) => {
  const sim = await startSim(t)
  const client = pinnedClient(t, sim)
  t.match(await rpc(client, sim, 'login', ['alice', 'wrong']), { fault: true, faultCode: 1, faultString: 'login failed' })
  t.match(await rpc(client, sim, 'login', ['', '']), { fault: true, faultCode: 1 })
  t.match(await rpc(client, sim, 'login', ['alice']), { fault: true, faultCode: -32602 })
  t.match(await rpc(client, sim, 'whoami'), { fault: true, faultCode: 2 })
  t.equal(sim.ledger.at(-1)?.outcome, 'refused')
  t.match(valueOf(await rpc(client, sim, 'login', ['demo', 'demo'])), { user: 'demo' })
})

t.test('logout unbinds the socket, which stays open', async (t) => {
  const sim = await startSim(t)
  const client = pinnedClient(t, sim)
  const { socket } = valueOf(await rpc(client, sim, 'login', ['alice', 'alice'])) as { socket: number }
  t.equal(valueOf(await rpc(client, sim, 'logout')), true)
  t.match(await rpc(client, sim, 'whoami'), { fault: true, faultCode: 2 })
  t.match(await rpc(client, sim, 'logout'), { fault: true, faultCode: 2 })
  // now free for another user
  t.match(valueOf(await rpc(client, sim, 'login', ['bob', 'bob'])), { user: 'bob', socket })
})

t.test('killing a user closes their socket; the reconnecting client is not logged in', async (t) => {
  const sim = await startSim(t)
  const alice = pinnedClient(t, sim)
  const bob = pinnedClient(t, sim)
  const first = valueOf(await rpc(alice, sim, 'login', ['alice', 'alice'])) as { socket: number }
  valueOf(await rpc(bob, sim, 'login', ['bob', 'bob']))
  const closedBefore = sim.socketsClosed()

  t.equal(sim.killUser('alice'), 1)
  t.equal(sim.killUser('nobody'), 0)
  await eventually(() => sim.socketsClosed() === closedBefore + 1)
  t.notOk(sim.sockets().some((s) => s.id === first.socket))

  // undici reconnects on a new socket: the login did not travel with it
  const again = await rpc(alice, sim, 'whoami')
  t.match(again, { fault: true, faultCode: 2 })
  t.not(sim.ledger.at(-1)?.socketId, first.socket)
  t.match(valueOf(await rpc(bob, sim, 'whoami')), { user: 'bob' })
})

t.test('killSocket closes exactly that socket', async (t) => {
  const sim = await startSim(t)
  const conn = await RawConnection.open(t, sim)
  const { socket } = valueOf(await conn.rpc(sim, 'login', ['alice', 'alice'])) as { socket: number }
  t.equal(sim.killSocket(socket), true)
  await conn.closed
  t.equal(sim.killSocket(socket), false)
  t.equal(sim.killSocket(9999), false)
})

t.test('methods', async (t) => {
  const sim = await startSim(t)
  const client = pinnedClient(t, sim)
  t.match(await rpc(client, sim, 'nope'), { fault: true, faultCode: -32601 })
  t.match(await rpc(client, sim, 'ping'), { fault: true, faultCode: 2 }, 'everything but login needs a login')
  valueOf(await rpc(client, sim, 'login', ['alice', 'alice']))

  t.equal(valueOf(await rpc(client, sim, 'ping')), true)
  t.equal(valueOf(await rpc(client, sim, 'heartbeat')), true)
  t.match(valueOf(await rpc(client, sim, 'system.listMethods')), ['login', 'logout', 'whoami', 'echo', 'sleep', 'fault', 'heartbeat', 'ping', 'system.listMethods', 'system.methodSignature', 'system.methodHelp', 'system.multicall'])
  t.match(await rpc(client, sim, 'fault', [42, 'the answer']), { fault: true, faultCode: 42, faultString: 'the answer' })
  t.match(await rpc(client, sim, 'fault', ['x']), { fault: true, faultCode: -32602 })
  t.match(await rpc(client, sim, 'sleep', ['soon']), { fault: true, faultCode: -32602 })

  const params = [1, -2147483648, 2.5, true, 'text  with spaces ', '', null, [1, ['nested']], { a: { b: '阀门' } },
    { $dateTime: '20240102T03:04:05' }, { $base64: 'aGVsbG8=' }]
  // a response's dateTime and base64 come back as their text (contract §3)
  const expected = [...params.slice(0, -2), '20240102T03:04:05', 'aGVsbG8=']
  t.same(valueOf(await rpc(client, sim, 'echo', params)), expected, 'echo keeps types, dateTime and base64 included')
  const conn = await RawConnection.open(t, sim)
  valueOf(await conn.rpc(sim, 'login', ['bob', 'bob']))
  const raw = await conn.request('POST', '/RPC2', { headers: { 'content-type': 'text/xml' }, body: encodeCall('echo', params) })
  t.match(raw.body.toString(), /<dateTime\.iso8601>20240102T03:04:05<\/dateTime\.iso8601>/)
  t.match(raw.body.toString(), /<base64>aGVsbG8=<\/base64>/)
  t.same(valueOf(await rpc(client, sim, 'echo')), [])

  const started = Date.now()
  t.equal(valueOf(await rpc(client, sim, 'sleep', [150])), 150)
  t.ok(Date.now() - started >= 140)
})

t.test('a body that is not a methodCall gets fault -32700; over 1 MiB gets 413', async (t) => {
  const sim = await startSim(t)
  const conn = await RawConnection.open(t, sim)
  for (const body of ['<methodCall><methodName>x', 'not xml at all', '<foo/>', '']) {
    const res = await conn.request('POST', '/RPC2', { headers: { 'content-type': 'text/xml' }, body })
    t.equal(res.status, 200)
    t.match(res.body.toString(), /<fault>[\s\S]*-32700[\s\S]*parse error/)
  }
  t.match(sim.ledger.at(-1), { kind: 'rpc', method: '', outcome: 'fault' })

  const get = await conn.request('GET', '/RPC2')
  t.equal(get.status, 405)
  t.equal(get.headers.allow, 'POST')

  const huge = encodeCall('echo', ['x'.repeat(1024 * 1024)])
  const res = await conn.request('POST', '/RPC2', { headers: { 'content-type': 'text/xml' }, body: huge })
  t.equal(res.status, 413)
  await conn.closed
  t.equal(sim.ledger.at(-1)?.outcome, 'error')
})

t.test('a call whose socket closes during sleep is dropped quietly', async (t) => {
  const sim = await startSim(t)
  const conn = await RawConnection.open(t, sim)
  valueOf(await conn.rpc(sim, 'login', ['alice', 'alice']))
  conn.send('POST', '/RPC2', { headers: { 'content-type': 'text/xml' }, body: encodeCall('sleep', [60_000]) })
  await eventually(() => sim.ledger.length === 2)
  conn.socket.destroy()
  await eventually(() => sim.sockets().length === 0)
  t.equal(sim.running, true)
})
