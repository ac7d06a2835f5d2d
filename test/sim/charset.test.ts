import t from 'tap'
import { CharsetDecodeError, decodeXml } from '../../lib/charset.js'
import { encodeText } from '../../lib/xml-write.js'
import { decodeResponse, encodeCall } from '../../lib/xmlrpc.js'
import { xmlToJson } from '../../lib/xml.js'
import { RawConnection, startSim, valueOf } from './helper.js'

const WORDS = '压力过高 阀门-1'

t.test('GBK without a declaration decodes right only with the gbk fallback', async (t) => {
  const sim = await startSim(t)
  const conn = await RawConnection.open(t, sim)
  valueOf(await conn.rpc(sim, 'login', ['alice', 'alice']))
  sim.setCharset('gbk', { declare: false })

  const res = await conn.request('POST', '/RPC2', { headers: { 'content-type': 'text/xml' }, body: encodeCall('echo', [WORDS], { encoding: 'UTF-8' }) })
  t.equal(res.headers['content-type'], 'text/xml')
  t.notMatch(res.body.toString('latin1'), /encoding=/, 'no declared encoding')
  t.same(res.body.includes(encodeText('压力过高', 'gbk')), true, 'the bytes are GBK')
  t.same(decodeResponse(decodeXml(res.body, res.headers['content-type'], 'gbk')), { fault: false, value: [WORDS] })
  t.throws(() => decodeXml(res.body, res.headers['content-type'], 'utf-8'), CharsetDecodeError, 'a UTF-8 reader refuses it')
})

t.test('declared and header charsets; GBK requests are read with the charset setting', async (t) => {
  const sim = await startSim(t)
  const conn = await RawConnection.open(t, sim)
  valueOf(await conn.rpc(sim, 'login', ['alice', 'alice']))

  sim.setCharset('gbk', { header: true })
  const declared = await conn.request('POST', '/RPC2', {
    headers: { 'content-type': 'text/xml' },
    body: encodeText(encodeCall('echo', [WORDS], { encoding: 'GBK' }), 'gbk')
  })
  t.equal(declared.headers['content-type'], 'text/xml; charset=gbk')
  t.match(declared.body.toString('latin1'), /^<\?xml version="1\.0" encoding="GBK"\?>/)
  t.same(decodeResponse(decodeXml(declared.body, declared.headers['content-type'], 'utf-8')), { fault: false, value: [WORDS] })

  // an undeclared GBK request: the server falls back to its own charset
  sim.setCharset('gbk', { declare: false })
  const undeclared = await conn.request('POST', '/RPC2', {
    headers: { 'content-type': 'text/xml' },
    body: encodeText(encodeCall('echo', [WORDS]).replace(/^<\?xml[^?]*\?>/, ''), 'gbk')
  })
  t.same(decodeResponse(decodeXml(undeclared.body, undefined, 'gbk')), { fault: false, value: [WORDS] })

  sim.setCharset('big5')
  const big5 = await conn.request('GET', '/xml/device?id=v1')
  // 阀 is not in Big5: it travels as a character reference, so nothing is lost
  const big5Text = decodeXml(big5.body, big5.headers['content-type'], 'utf-8')
  t.match(big5Text, /^<\?xml version="1\.0" encoding="BIG5"\?>/)
  t.match(xmlToJson(big5Text), { device: { name: '阀门-1', location: '二号车间 <east>' } })

  sim.setCharset('utf-8')
  const utf8 = await conn.request('GET', '/xml/device?id=v1')
  t.match(utf8.body.toString('utf8'), /^<\?xml version="1\.0" encoding="UTF-8"\?>/)
  t.match(utf8.body.toString('utf8'), /阀门-1/)

  t.throws(() => sim.setCharset('klingon-8'), RangeError)
  t.equal(sim.state().charset.charset, 'utf-8')
})

t.test('the last XML-RPC call is recorded as the bytes that arrived', async (t) => {
  const sim = await startSim(t)
  const conn = await RawConnection.open(t, sim)
  t.equal(sim.lastRpcRequest, null)
  const body = encodeText(encodeCall('login', ['alice', 'alice'], { encoding: 'GBK' }), 'gbk')
  await conn.request('POST', '/RPC2', { headers: { 'content-type': 'text/xml' }, body })
  t.same(sim.lastRpcRequest?.body, body)
  t.match(sim.lastRpcRequest, { method: 'POST', path: '/RPC2', headers: { 'content-type': 'text/xml' } })
  await conn.request('GET', '/xml/devices')
  t.same(sim.lastRpcRequest?.body, body, 'XML requests are not XML-RPC calls')
  sim.reset()
  t.equal(sim.lastRpcRequest, null, 'reset clears it')
})
