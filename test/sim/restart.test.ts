import t from 'tap'
import { connect, eventually, pinnedClient, RawConnection, rpc, startSim, valueOf } from './helper.js'

t.test('stop drops every socket and refuses connections; start listens on the same port', async (t) => {
  const sim = await startSim(t)
  const { port, hostname } = new URL(sim.origin)
  const origin = sim.origin
  const a = await RawConnection.open(t, sim)
  const b = await RawConnection.open(t, sim)
  valueOf(await a.rpc(sim, 'login', ['alice', 'alice']))
  valueOf(await b.rpc(sim, 'login', ['bob', 'bob']))
  // a hanging call must not keep the crash from happening
  sim.setFault({ mode: 'hang', count: 1 })
  b.send('POST', '/RPC2', { headers: { 'content-type': 'text/xml' }, body: '<methodCall><methodName>ping</methodName></methodCall>' })
  await eventually(() => sim.ledger.at(-1)?.outcome === 'hang')

  const closedBefore = sim.socketsClosed()
  await sim.stop()
  t.equal(sim.running, false)
  await Promise.all([a.closed, b.closed])
  t.equal(sim.socketsClosed(), closedBefore + 2)
  t.same(sim.sockets(), [])
  await t.rejects(connect(Number(port), hostname), { code: 'ECONNREFUSED' })
  await sim.stop() // idempotent

  await sim.start()
  t.equal(sim.running, true)
  t.equal(sim.origin, origin, 'same port')
  const client = pinnedClient(t, sim)
  t.match(await rpc(client, sim, 'whoami'), { fault: true, faultCode: 2 }, 'logins did not survive the crash')
  t.match(valueOf(await rpc(client, sim, 'login', ['alice', 'alice'])), { user: 'alice' })
  await sim.start() // idempotent
})

t.test('close stops everything and is idempotent', async (t) => {
  const sim = await startSim(t)
  const { port, hostname } = new URL(sim.origin)
  const control = new URL(sim.controlUrl)
  await sim.close()
  await sim.close()
  t.equal(sim.running, false)
  await t.rejects(connect(Number(port), hostname), { code: 'ECONNREFUSED' })
  await t.rejects(connect(Number(control.port), control.hostname), { code: 'ECONNREFUSED' })
  await t.rejects(sim.start(), /closed/)
})

t.test('ports given in options are used', async (t) => {
  const first = await startSim(t)
  const port = Number(new URL(first.origin).port)
  await first.close()
  const sim = await startSim(t, { rpcPort: port, rpcPath: '/xmlrpc' })
  t.equal(sim.rpcUrl, `http://127.0.0.1:${port}/xmlrpc`)
  const conn = await RawConnection.open(t, sim)
  t.match(valueOf(await conn.rpc(sim, 'login', ['demo', 'demo'])), { user: 'demo' })
  t.equal((await conn.request('POST', '/RPC2', { body: '<methodCall/>' })).status, 404, 'only the configured path is XML-RPC')
})

t.test('a busy port makes createSimulator reject', async (t) => {
  const first = await startSim(t)
  const { createSimulator } = await import('../../sim/legacy.js')
  await t.rejects(createSimulator({ rpcPort: Number(new URL(first.origin).port) }), { code: 'EADDRINUSE' })
})
