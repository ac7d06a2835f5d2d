import { test } from 'tap'
import { request as httpRequest } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import iconv from 'iconv-lite'
import { build, login, cookieHeader, JSON_HEADERS } from '../../helper.js'

const P3 = {
  '@id': 'p3',
  '@kind': 'pump',
  name: 'pump-3',
  status: '  ok  ',
  code: '010',
  enabled: 'true',
  pressure: { '@unit': 'bar', '#text': '3.50' },
  location: 'hall A & B'
}
const V1 = {
  '@id': 'v1',
  '@kind': 'valve',
  name: '阀门-1',
  status: 'closed',
  code: '007',
  enabled: 'false',
  pressure: { '@unit': 'bar', '#text': '0' },
  location: '二号车间 <east>'
}

test('an XML document becomes JSON: repeated and single elements, attributes, strings kept', async (t) => {
  const { app } = await build(t)
  const cookie = await login(app, 'alice')
  const list = await app.inject({ url: '/api/xml/xml/devices', headers: { cookie } })
  t.equal(list.statusCode, 200)
  t.equal(list.headers['content-type'], 'application/json; charset=utf-8')
  t.equal(Number(list.headers['content-length']), Buffer.byteLength(list.body), 'Content-Length matches the JSON')
  t.strictSame(list.json(), { devices: { '@count': '2', device: [P3, V1] } })

  const one = await app.inject({ url: '/api/xml/xml/device?id=p3', headers: { cookie } })
  t.equal(one.statusCode, 200)
  t.strictSame(one.json(), { device: P3 }, 'a single element stays single; the query string reached the legacy side')

  const missing = await app.inject({ url: '/api/xml/xml/device?id=zz', headers: { cookie } })
  t.equal(missing.statusCode, 404, 'the legacy status code is kept')
  t.strictSame(missing.json(), { error: 'unknown device: zz' })
})

test('Accept: application/xml passes the legacy bytes through untouched', async (t) => {
  const { app, sim } = await build(t)
  const cookie = await login(app, 'alice')
  sim.setCharset('gbk', { declare: false, header: false })
  const res = await app.inject({ url: '/api/xml/xml/device?id=v1', headers: { cookie, accept: 'application/xml' } })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/xml/)
  const expected = iconv.encode(
    '<device id="v1" kind="valve"><name>阀门-1</name><status>closed</status><code>007</code><enabled>false</enabled>' +
    '<pressure unit="bar">0</pressure><location>二号车间 &lt;east&gt;</location></device>', 'gbk')
  t.ok(res.rawPayload.includes(expected), 'the GBK bytes arrive as the legacy server sent them')
  t.equal(Number(res.headers['content-length']), res.rawPayload.length)
  const textXml = await app.inject({ url: '/api/xml/xml/devices', headers: { cookie, accept: 'text/xml, application/json;q=0.5' } })
  t.match(textXml.headers['content-type'], /^text\/xml/)
  const json = await app.inject({ url: '/api/xml/xml/devices', headers: { cookie, accept: 'application/json, application/xml;q=0.9' } })
  t.equal(json.headers['content-type'], 'application/json; charset=utf-8')
})

test('legacy charsets: GBK without a declaration, with LEGACY_CHARSET=gbk', async (t) => {
  const { app, sim } = await build(t, { env: { LEGACY_CHARSET: 'gbk' } })
  sim.setCharset('gbk', { declare: false, header: false })
  const cookie = await login(app, 'alice')
  const res = await app.inject({ url: '/api/xml/xml/device?id=v1', headers: { cookie } })
  t.equal(res.statusCode, 200)
  t.strictSame(res.json(), { device: V1 })
  const rpcRes = await app.inject({ method: 'POST', url: '/api/rpc/echo', headers: { ...JSON_HEADERS, cookie }, payload: ['压力过高'] })
  t.strictSame(rpcRes.json(), { result: ['压力过高'] }, 'the XML-RPC route follows the same charset rules')

  // A JSON body is written as XML in the legacy charset.
  const post = await app.inject({ method: 'POST', url: '/api/xml/xml/echo', headers: { ...JSON_HEADERS, cookie }, payload: { alarm: { '@level': 'critical', message: '压力过高' } } })
  t.equal(post.statusCode, 200)
  const seen = sim.lastXmlRequest
  t.ok(seen)
  t.match(seen?.headers['content-type'], /^text\/xml; charset=gbk/)
  const text = iconv.decode(seen?.body ?? Buffer.alloc(0), 'gbk')
  t.match(text, /<alarm level="critical"><message>压力过高<\/message><\/alarm>/)
  t.ok((seen?.body ?? Buffer.alloc(0)).includes(iconv.encode('压力过高', 'gbk')), 'GBK bytes on the wire')
})

test('charset from the Content-Type header when the document does not declare one', async (t) => {
  const { app, sim } = await build(t)
  sim.setCharset('big5', { declare: false, header: true })
  const cookie = await login(app, 'alice')
  const res = await app.inject({ url: '/api/xml/xml/device?id=p3', headers: { cookie } })
  t.equal(res.statusCode, 200)
  t.strictSame(res.json(), { device: P3 })
})

test('request bodies: JSON converted, XML byte for byte, others refused', async (t) => {
  const { app, sim } = await build(t)
  const cookie = await login(app, 'alice')
  const json = await app.inject({
    method: 'PUT',
    url: '/api/xml/xml/echo?x=1',
    headers: { ...JSON_HEADERS, cookie },
    payload: { order: { '@id': '7', item: ['a', 'b'], note: '  keep  ' } }
  })
  t.equal(json.statusCode, 200)
  t.equal(sim.lastXmlRequest?.method, 'PUT')
  t.equal(sim.lastXmlRequest?.path, '/xml/echo?x=1')
  t.match(sim.lastXmlRequest?.body.toString(), /<order id="7"><item>a<\/item><item>b<\/item><note> {2}keep {2}<\/note><\/order>/)
  t.equal(sim.lastXmlRequest?.headers.cookie, undefined, 'the browser cookie never reaches the legacy server')

  const raw = Buffer.from('<?xml version="1.0"?>\n<q  a="1" >\r\n  <![CDATA[x<y]]>\t</q>\n')
  const xml = await app.inject({ method: 'POST', url: '/api/xml/xml/echo', headers: { cookie, 'content-type': 'application/xml' }, payload: raw })
  t.equal(xml.statusCode, 200)
  t.same(sim.lastXmlRequest?.body, raw, 'an XML body passes byte for byte')
  t.equal(sim.lastXmlRequest?.headers['content-type'], 'application/xml')

  const text = await app.inject({ method: 'POST', url: '/api/xml/xml/echo', headers: { cookie, 'content-type': 'text/plain' }, payload: '<a/>' })
  t.equal(text.statusCode, 415)
  t.equal(text.json().code, 'UNSUPPORTED_MEDIA_TYPE')
  const badJson = await app.inject({ method: 'POST', url: '/api/xml/xml/echo', headers: { ...JSON_HEADERS, cookie }, payload: '{"a":' })
  t.equal(badJson.statusCode, 400)
  t.equal(badJson.json().code, 'BAD_REQUEST')
  const twoRoots = await app.inject({ method: 'POST', url: '/api/xml/xml/echo', headers: { ...JSON_HEADERS, cookie }, payload: { a: '1', b: '2' } })
  t.equal(twoRoots.statusCode, 400)
  t.equal(twoRoots.json().code, 'BAD_REQUEST')
})

test('non-XML answers pass through; hostile and broken XML is 502 and the session survives', async (t) => {
  const { app, sim } = await build(t)
  const cookie = await login(app, 'alice')
  const text = await app.inject({ url: '/api/xml/xml/text', headers: { cookie } })
  t.equal(text.statusCode, 200)
  t.match(text.headers['content-type'], /^text\/plain/)
  t.match(text.body, /this is not XML/)
  for (const mode of ['entity', 'truncated', 'malformed'] as const) {
    sim.setFault({ mode, count: 1 })
    const res = await app.inject({ url: '/api/xml/xml/devices', headers: { cookie } })
    t.equal(res.statusCode, 502, mode)
    t.equal(res.json().code, 'BAD_UPSTREAM_RESPONSE')
    t.equal(res.headers['content-type'], 'application/json; charset=utf-8')
  }
  const ok = await app.inject({ url: '/api/xml/xml/devices', headers: { cookie } })
  t.equal(ok.statusCode, 200, 'same session, same socket')
})

test('no session, lost session, timeouts: the contract codes', async (t) => {
  const { app, sim } = await build(t, { env: { LEGACY_TIMEOUT_MS: '300' } })
  const anon = await app.inject({ url: '/api/xml/xml/devices' })
  t.equal(anon.statusCode, 401)
  t.equal(anon.json().code, 'UNAUTHENTICATED')
  const alice = await login(app, 'alice')
  const bob = await login(app, 'bob')
  sim.killUser('alice')
  await sleep(50)
  const lost = await app.inject({ url: '/api/xml/xml/devices', headers: { cookie: alice } })
  t.equal(lost.statusCode, 401)
  t.equal(lost.json().code, 'SESSION_LOST')
  sim.setFault({ mode: 'hang', count: 1 })
  const timeout = await app.inject({ url: '/api/xml/xml/devices', headers: { cookie: bob } })
  t.equal(timeout.statusCode, 504)
  t.equal(timeout.json().code, 'UPSTREAM_TIMEOUT')
})

test('HEAD does not close the pinned socket', async (t) => {
  const { app, sim } = await build(t)
  const cookie = await login(app, 'alice')
  const before = sim.sockets().find(s => s.user === 'alice')
  const head = await app.inject({ method: 'HEAD', url: '/api/xml/xml/devices', headers: { cookie } })
  t.equal(head.statusCode, 200)
  t.equal(head.body, '')
  await sleep(100)
  const after = await app.inject({ method: 'POST', url: '/api/rpc/whoami', headers: { ...JSON_HEADERS, cookie }, payload: [] })
  t.equal(after.statusCode, 200)
  t.equal(after.json().result.socket, before?.id, 'same socket after HEAD')
})

test('a browser abort mid-response, then a call on the same socket; two users never cross', async (t) => {
  const { sim, url } = await build(t, { listen: true })
  const cookies: Record<string, string> = {}
  for (const user of ['alice', 'bob']) {
    const res = await fetch(`${url}/api/login`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ username: user, password: user }) })
    cookies[user] = cookieHeader(res)
  }
  const aliceSocket = sim.sockets().find(s => s.user === 'alice')?.id
  sim.setFault({ mode: 'slow', delayMs: 300, count: 1 })
  // A raw request that goes away before the answer comes.
  await new Promise<void>((resolve) => {
    const req = httpRequest(`${url}/api/xml/xml/devices`, { headers: { cookie: cookies.alice } })
    req.on('error', () => resolve())
    req.end()
    setTimeout(() => { req.destroy(); resolve() }, 100)
  })
  await sleep(400)
  const calls = await Promise.all(Array.from({ length: 40 }, async (_, i) => {
    const user = i % 2 === 0 ? 'alice' : 'bob'
    const res = await fetch(`${url}/api/xml/xml/device?id=p3`, { headers: { cookie: cookies[user] as string } })
    return res.status
  }))
  t.same(new Set(calls), new Set([200]))
  t.equal(sim.sockets().find(s => s.user === 'alice')?.id, aliceSocket, "alice's socket survived the abort")
  const bySocket = new Map<number, Set<string | null>>()
  for (const e of sim.ledger) {
    const set = bySocket.get(e.socketId) ?? new Set()
    set.add(e.user)
    bySocket.set(e.socketId, set)
  }
  // The login call itself arrives before the socket is bound (user null).
  for (const [socket, users] of bySocket) t.equal([...users].filter(u => u !== null).length, 1, `socket ${socket} carried one user`)
  t.ok(sim.ledger.filter(e => e.kind === 'xml').every(e => e.user !== null), 'every XML call arrived on a logged-in socket')
})
