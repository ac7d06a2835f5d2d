import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { RawConnection, startSim, valueOf } from './helper.js'

// The one slow test: Node's default keepAliveTimeout (5 s) would close this socket and log the user out.
t.test('an idle socket stays open (and logged in) after 6 s, with no Keep-Alive header', async (t) => {
  const sim = await startSim(t)
  const conn = await RawConnection.open(t, sim)
  const login = await conn.request('POST', '/RPC2', {
    headers: { 'content-type': 'text/xml' },
    body: '<?xml version="1.0"?><methodCall><methodName>login</methodName><params><param><value>alice</value></param><param><value>alice</value></param></params></methodCall>'
  })
  t.equal(login.status, 200)
  t.equal(login.headers['keep-alive'], undefined, 'no Keep-Alive hint by default')
  t.not(login.headers.connection, 'close')

  await sleep(6000)
  t.notOk(conn.isClosed, 'still open after 6 s idle')
  t.match(valueOf(await conn.rpc(sim, 'whoami')), { user: 'alice' })
})
