import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { RawConnection, startSim, valueOf } from './helper.js'

t.test('setKeepAliveHint(2) advertises timeout=2 but keeps the socket open', async (t) => {
  const sim = await startSim(t)
  sim.setKeepAliveHint(2)
  const conn = await RawConnection.open(t, sim)
  const login = await conn.request('POST', '/RPC2', {
    headers: { 'content-type': 'text/xml' },
    body: '<?xml version="1.0"?><methodCall><methodName>login</methodName><params><param><value><string>bob</string></value></param><param><value><string>bob</string></value></param></params></methodCall>'
  })
  t.equal(login.headers['keep-alive'], 'timeout=2')

  await sleep(3000)
  t.notOk(conn.isClosed, 'the server did not act on its own hint')
  t.match(valueOf(await conn.rpc(sim, 'whoami')), { user: 'bob' })

  sim.setKeepAliveHint(null)
  const res = await conn.request('GET', '/xml/text')
  t.equal(res.headers['keep-alive'], undefined)
  t.throws(() => sim.setKeepAliveHint(-1), RangeError)
})
