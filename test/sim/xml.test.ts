import t from 'tap'
import { decodeXml } from '../../lib/charset.js'
import { encodeText } from '../../lib/xml-write.js'
import { xmlToJson } from '../../lib/xml.js'
import { RawConnection, startSim, valueOf } from './helper.js'

async function loggedIn (t: Parameters<typeof startSim>[0]) {
  const sim = await startSim(t)
  const conn = await RawConnection.open(t, sim)
  valueOf(await conn.rpc(sim, 'login', ['alice', 'alice']))
  return { sim, conn }
}

t.test('GET /xml/devices: repeated elements, attributes, whitespace kept', async (t) => {
  const { sim, conn } = await loggedIn(t)
  const res = await conn.request('GET', '/xml/devices')
  t.equal(res.status, 200)
  t.equal(res.headers['content-type'], 'text/xml')
  const text = res.body.toString('utf8')
  t.match(text, /<devices count="2"><device id="p3" kind="pump"><name>pump-3<\/name><status> {2}ok {2}<\/status><code>010<\/code>/)
  t.match(text, /<device id="v1" kind="valve"><name>阀门-1<\/name>/)

  const json = xmlToJson(text) as { devices: { '@count': string, device: Array<Record<string, unknown>> } }
  t.equal(json.devices['@count'], '2')
  t.equal(json.devices.device.length, 2)
  t.match(json.devices.device[0], { '@id': 'p3', '@kind': 'pump', name: 'pump-3', status: '  ok  ', code: '010', enabled: 'true', location: 'hall A & B' })
  t.match(json.devices.device[1], { '@id': 'v1', name: '阀门-1', location: '二号车间 <east>' })
  t.match(sim.ledger.at(-1), { kind: 'xml', method: 'GET /xml/devices', user: 'alice', outcome: 'ok' })
})

t.test('GET /xml/device honours the query string; unknown id is 404', async (t) => {
  const { sim, conn } = await loggedIn(t)
  const res = await conn.request('GET', '/xml/device?id=v1')
  t.equal(res.status, 200)
  t.match(res.body.toString(), /^<\?xml[^>]*\?>\s*<device id="v1" kind="valve">/)
  const missing = await conn.request('GET', '/xml/device?id=zz')
  t.equal(missing.status, 404)
  t.match(missing.body.toString(), /<error>unknown device: zz<\/error>/)
  t.match(sim.ledger.at(-1), { method: 'GET /xml/device?id=zz', outcome: 'error' })
  t.equal((await conn.request('GET', '/xml/nothing-here')).status, 404)
  const wrongMethod = await conn.request('DELETE', '/xml/devices')
  t.equal(wrongMethod.status, 405)
  t.equal(wrongMethod.headers.allow, 'GET, HEAD')
})

t.test('POST and PUT /xml/echo answer the text and record the raw bytes', async (t) => {
  const { sim, conn } = await loggedIn(t)
  const sent = '<?xml version="1.0" encoding="GBK"?><order><item qty="2">阀门</item></order>'
  const bytes = encodeText(sent, 'gbk')
  const res = await conn.request('POST', '/xml/echo?x=1', { headers: { 'content-type': 'application/xml', 'x-test': 'yes' }, body: bytes })
  t.equal(res.status, 200)
  const json = xmlToJson(res.body.toString('utf8')) as { echo: Record<string, string> }
  t.same(json.echo, { method: 'POST', contentType: 'application/xml', body: sent })
  t.same(sim.lastXmlRequest?.body, bytes, 'raw bytes recorded')
  t.match(sim.lastXmlRequest, { method: 'POST', path: '/xml/echo?x=1', headers: { 'x-test': 'yes', 'content-type': 'application/xml' } })

  const put = await conn.request('PUT', '/xml/echo', { headers: { 'content-type': 'text/xml; charset=utf-8' }, body: '<a>é</a>' })
  t.match(put.body.toString('utf8'), /<method>PUT<\/method><contentType>text\/xml; charset=utf-8<\/contentType><body>&lt;a&gt;é&lt;\/a&gt;<\/body>/)
  t.equal(sim.lastXmlRequest?.method, 'PUT')
})

t.test('the echo is escaped as the gateway writes: markup, and a CR that survives the reader', async (t) => {
  const { conn } = await loggedIn(t)
  const sent = '<a b="\'1\'">x\r\ny & z</a>'
  const res = await conn.request('POST', '/xml/echo', { headers: { 'content-type': 'application/xml' }, body: sent })
  t.equal(res.status, 200)
  t.match(res.body.toString('utf8'), /<body>&lt;a b=&quot;'1'&quot;&gt;x&#13;\ny &amp; z&lt;\/a&gt;<\/body>/)
  t.equal((xmlToJson(res.body.toString('utf8')) as { echo: Record<string, string> }).echo.body, sent, 'the CR comes back as a CR, not as the LF a raw one would be read as')
})

t.test('not logged in: 403 <error>; HEAD; text/plain', async (t) => {
  const sim = await startSim(t)
  const conn = await RawConnection.open(t, sim)
  const refused = await conn.request('GET', '/xml/devices')
  t.equal(refused.status, 403)
  t.equal(refused.headers['content-type'], 'text/xml')
  t.match(refused.body.toString(), /<error>not logged in<\/error>/)
  t.equal((await conn.request('POST', '/xml/echo', { body: '<a/>' })).status, 403)
  t.equal(sim.lastXmlRequest, null)
  t.match(sim.ledger.at(-1), { kind: 'xml', user: null, outcome: 'refused' })

  valueOf(await conn.rpc(sim, 'login', ['alice', 'alice']))
  const get = await conn.request('GET', '/xml/devices')
  const head = await conn.request('HEAD', '/xml/devices')
  t.equal(head.status, 200)
  t.equal(head.headers['content-length'], String(get.body.length))
  t.equal(head.body.length, 0)
  t.equal((await conn.request('HEAD', '/xml/device?id=p3')).status, 200)

  const text = await conn.request('GET', '/xml/text')
  t.match(text.headers['content-type'], /^text\/plain/)
  t.match(text.body.toString(), /not XML/)
  t.equal((await conn.request('HEAD', '/xml/text')).status, 200)
  t.equal(valueOf(await conn.rpc(sim, 'ping')), true, 'the socket still works after HEAD')
})

t.test('XML answers honour the charset setting', async (t) => {
  const { sim, conn } = await loggedIn(t)
  sim.setCharset('gb18030', { declare: false, header: true })
  const res = await conn.request('GET', '/xml/devices')
  t.equal(res.headers['content-type'], 'text/xml; charset=gb18030')
  t.notMatch(res.body.toString('latin1'), /^<\?xml/)
  t.match(decodeXml(res.body, res.headers['content-type'], 'utf-8'), /<name>阀门-1<\/name>/)
})
