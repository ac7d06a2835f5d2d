import { test, type Test } from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import iconv from 'iconv-lite'
import { build, login, rpc, JSON_HEADERS } from '../../helper.js'
import { decodeXml } from '../../../lib/charset.js'
import { decodeCall, encodeResponse } from '../../../lib/xmlrpc.js'
import { xmlToJson } from '../../../lib/xml.js'

// An emoji, the euro sign and a CJK Extension B character: GBK and Big5 lack the first and the
// last (iconv-lite's GBK and Big5 both have €).
const WORDS = '压力 😀 € 𠀀 壓力'

for (const charset of ['gbk', 'big5']) {
  test(`${charset}: /api/rpc sends what the charset lacks as character references and gets it back exactly`, async (t) => {
    const { app, sim } = await build(t, { env: { LEGACY_CHARSET: charset } })
    sim.setCharset(charset)
    const cookie = await login(app, 'alice')
    const res = await rpc(app, cookie, 'echo', [WORDS, { [WORDS]: WORDS }])
    t.equal(res.statusCode, 200)
    t.strictSame(res.json(), { result: [WORDS, { [WORDS]: WORDS }] }, 'the echo comes back exact')

    const sent = sim.lastRpcRequest?.body ?? Buffer.alloc(0)
    const text = iconv.decode(sent, charset)
    t.match(text, `<?xml version="1.0" encoding="${charset.toUpperCase()}"?>`)
    t.match(text, '&#x1F600;', 'the emoji travels as a reference')
    t.match(text, '&#x20000;', 'so does 𠀀')
    t.ok(sent.includes(iconv.encode('€', charset)), `€ travels as ${charset} bytes`)
    t.notMatch(text.replace(/^<\?xml[^?]*\?>/, ''), '?', 'nothing became "?"')
    t.strictSame(decodeCall(decodeXml(sent, undefined, 'utf-8')), { method: 'echo', params: [WORDS, { [WORDS]: WORDS }] },
      'the simulator received the exact characters')
  })

  test(`${charset}: an /api/xml JSON body sends what the charset lacks as character references`, async (t) => {
    const { app, sim } = await build(t, { env: { LEGACY_CHARSET: charset } })
    sim.setCharset(charset)
    const cookie = await login(app, 'alice')
    const doc = { note: { '@by': WORDS, '#text': WORDS, line: [WORDS, WORDS] } }
    const res = await app.inject({ method: 'POST', url: '/api/xml/xml/echo', headers: { ...JSON_HEADERS, cookie }, payload: doc })
    t.equal(res.statusCode, 200)
    const sent = sim.lastXmlRequest?.body ?? Buffer.alloc(0)
    t.match(sim.lastXmlRequest?.headers['content-type'], `text/xml; charset=${charset}`)
    t.match(iconv.decode(sent, charset), '&#x1F600;')
    t.strictSame(xmlToJson(decodeXml(sent, undefined, 'utf-8')), doc, 'the simulator received the exact characters')
  })

  test(`${charset}: a JSON key the charset cannot write is 400 and nothing is sent`, async (t) => {
    const { app, sim } = await build(t, { env: { LEGACY_CHARSET: charset } })
    sim.setCharset(charset)
    const cookie = await login(app, 'alice')
    const before = sim.ledger.length
    for (const payload of [{ 한: 'x' }, { note: { क: 'x' } }, { note: { '@ŉ': 'x' } }]) {
      const res = await app.inject({ method: 'POST', url: '/api/xml/xml/echo', headers: { ...JSON_HEADERS, cookie }, payload })
      t.equal(res.statusCode, 400, JSON.stringify(payload))
      t.equal(res.json().code, 'BAD_REQUEST')
      t.match(res.json().message, new RegExp(`cannot be written in ${charset.toUpperCase()} inside an element or attribute name`))
    }
    t.equal(sim.ledger.length, before, 'nothing reached the legacy server')
    t.equal(sim.lastXmlRequest, null)
    const after = await app.inject({ method: 'POST', url: '/api/xml/xml/echo', headers: { ...JSON_HEADERS, cookie }, payload: { 壓力: '😀' } })
    t.equal(after.statusCode, 200, 'the session goes on')
    t.strictSame(xmlToJson(decodeXml(sim.lastXmlRequest?.body ?? Buffer.alloc(0), undefined, 'utf-8')), { 壓力: '😀' })
  })
}

test('XML bodies from the browser still pass byte for byte', async (t) => {
  const { app, sim } = await build(t, { env: { LEGACY_CHARSET: 'gbk' } })
  sim.setCharset('gbk')
  const cookie = await login(app, 'alice')
  const body = Buffer.from('<?xml version="1.0" encoding="UTF-8"?><note>😀</note>')
  const res = await app.inject({ method: 'POST', url: '/api/xml/xml/echo', headers: { 'content-type': 'application/xml', cookie }, payload: body })
  t.equal(res.statusCode, 200)
  t.same(sim.lastXmlRequest?.body, body)

  // The browser's charset label travels with its bytes: without it the legacy server would read
  // them in its own default.
  const gbk = iconv.encode('<note>压力过高</note>', 'gbk')
  const labelled = await app.inject({ method: 'POST', url: '/api/xml/xml/echo', headers: { 'content-type': 'text/xml; charset=GBK', cookie }, payload: gbk })
  t.equal(labelled.statusCode, 200)
  t.same(sim.lastXmlRequest?.body, gbk)
  t.equal(sim.lastXmlRequest?.headers['content-type'], 'text/xml; charset=GBK', 'the Content-Type is passed as the browser wrote it')
})

interface Legacy { url: string, sockets: Set<number>, answers: Buffer[], contentType: string }

/**
 * A legacy server that answers every request with a valid XML-RPC answer, except that the next
 * request after a test pushes bytes onto `answers` gets exactly those bytes.
 */
async function rawLegacy (t: Test): Promise<Legacy> {
  const legacy: Legacy = { url: '', sockets: new Set(), answers: [], contentType: 'text/xml' }
  const server = createServer((req, res) => {
    legacy.sockets.add(req.socket.remotePort ?? 0)
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > 65536) req.socket.destroy()
    })
    req.on('end', () => {
      res.writeHead(200, { 'content-type': legacy.contentType })
      res.end(legacy.answers.shift() ?? Buffer.from(encodeResponse('fine')))
    })
  })
  server.keepAliveTimeout = 0
  server.requestTimeout = 10_000
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  legacy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/RPC2`
  return legacy
}

const bytes = (...parts: Array<string | number[] | Buffer>): Buffer =>
  Buffer.concat(parts.map(p => typeof p === 'string' ? Buffer.from(p) : Buffer.from(p)))
const RESPONSE_OPEN = '<methodResponse><params><param><value><string>'
const RESPONSE_CLOSE = '</string></value></param></params></methodResponse>'

test('invalid bytes in an XML-RPC answer are 502 naming the charset, and the session goes on', async (t) => {
  const legacy = await rawLegacy(t)
  const { app } = await build(t, { env: { LEGACY_URL: legacy.url } })
  const cookie = await login(app, 'alice')

  legacy.answers.push(bytes(RESPONSE_OPEN, 'ok ', [0xFF, 0xFE], RESPONSE_CLOSE))
  const utf8 = await rpc(app, cookie, 'echo')
  t.equal(utf8.statusCode, 502)
  t.equal(utf8.json().code, 'BAD_UPSTREAM_RESPONSE')
  t.match(utf8.json().message, /not valid UTF-8/)
  const next = await rpc(app, cookie, 'echo')
  t.equal(next.statusCode, 200, 'the next call on the same session works')
  t.strictSame(next.json(), { result: 'fine' })

  legacy.answers.push(bytes('<?xml version="1.0" encoding="GBK"?>', RESPONSE_OPEN, iconv.encode('压力', 'gbk'), [0x81, 0x20], RESPONSE_CLOSE))
  const gbk = await rpc(app, cookie, 'echo')
  t.equal(gbk.statusCode, 502)
  t.equal(gbk.json().code, 'BAD_UPSTREAM_RESPONSE')
  t.match(gbk.json().message, /not valid GBK \(as its XML declaration says\)/)
  t.equal((await rpc(app, cookie, 'echo')).statusCode, 200)
  t.equal(legacy.sockets.size, 1, 'everything travelled on the one pinned socket')
})

test('LEGACY_CHARSET=gbk: invalid GBK bytes in an undeclared answer are 502', async (t) => {
  const legacy = await rawLegacy(t)
  const { app } = await build(t, { env: { LEGACY_URL: legacy.url, LEGACY_CHARSET: 'gbk' } })
  const cookie = await login(app, 'alice')
  legacy.answers.push(bytes(RESPONSE_OPEN, [0xD1, 0xB9, 0xFF], RESPONSE_CLOSE))
  const res = await rpc(app, cookie, 'echo')
  t.equal(res.statusCode, 502)
  t.equal(res.json().code, 'BAD_UPSTREAM_RESPONSE')
  t.match(res.json().message, /not valid GBK \(the charset for documents that declare none\)/)
  legacy.answers.push(bytes(RESPONSE_OPEN, [0xD1, 0xB9], RESPONSE_CLOSE))
  const next = await rpc(app, cookie, 'echo')
  t.equal(next.statusCode, 200)
  t.strictSame(next.json(), { result: '压' })
})

test('a login answered with invalid bytes is 502 and leaves no session', async (t) => {
  const legacy = await rawLegacy(t)
  const { app } = await build(t, { env: { LEGACY_URL: legacy.url } })
  legacy.answers.push(bytes(RESPONSE_OPEN, 'welcome ', [0xC3], RESPONSE_CLOSE))
  const res = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'alice', password: 'alice' } })
  t.equal(res.statusCode, 502)
  t.equal(res.json().code, 'BAD_UPSTREAM_RESPONSE')
  t.match(res.json().message, /UTF-8/)
  t.equal(app.sessions.size, 0)
  t.type(await login(app, 'alice'), 'string', 'the next login works')
})

test('/api/xml: invalid bytes are 502 when converted to JSON, passed untouched when XML is preferred', async (t) => {
  const legacy = await rawLegacy(t)
  const { app } = await build(t, { env: { LEGACY_URL: legacy.url, LEGACY_CHARSET: 'gbk' } })
  const cookie = await login(app, 'alice')
  const broken = bytes('<device><name>', [0xB7, 0xA7, 0xC3, 0x85, 0xFF], '</name></device>')

  legacy.answers.push(broken)
  const json = await app.inject({ url: '/api/xml/xml/device', headers: { cookie } })
  t.equal(json.statusCode, 502)
  t.equal(json.json().code, 'BAD_UPSTREAM_RESPONSE')
  t.match(json.json().message, /not valid GBK/)

  legacy.answers.push(broken)
  const xml = await app.inject({ url: '/api/xml/xml/device', headers: { cookie, accept: 'application/xml' } })
  t.equal(xml.statusCode, 200, 'an XML answer is not judged')
  t.same(xml.rawPayload, broken, 'the legacy bytes, untouched')

  legacy.answers.push(bytes('<device><name>', [0xB7, 0xA7, 0xC3, 0xC5], '</name></device>'))
  const next = await app.inject({ url: '/api/xml/xml/device', headers: { cookie } })
  t.equal(next.statusCode, 200, 'the session goes on')
  t.strictSame(next.json(), { device: { name: '阀门' } })
  t.equal(legacy.sockets.size, 1)
})

test('an answer labelled us-ascii holding raw UTF-8 (Perl RPC::XML) decodes exactly', async (t) => {
  const legacy = await rawLegacy(t)
  const { app } = await build(t, { env: { LEGACY_URL: legacy.url, LEGACY_CHARSET: 'gbk' } })
  const cookie = await login(app, 'alice')
  legacy.answers.push(Buffer.from(`<?xml version="1.0" encoding="us-ascii"?>${RESPONSE_OPEN}压力过高 é${RESPONSE_CLOSE}`))
  const declared = await rpc(app, cookie, 'echo')
  t.equal(declared.statusCode, 200)
  t.strictSame(declared.json(), { result: '压力过高 é' })

  legacy.contentType = 'text/xml; charset=US-ASCII'
  legacy.answers.push(Buffer.from(`${RESPONSE_OPEN}压力过高 é${RESPONSE_CLOSE}`))
  const header = await rpc(app, cookie, 'echo')
  t.equal(header.statusCode, 200)
  t.strictSame(header.json(), { result: '压力过高 é' }, 'the same for a Content-Type charset')

  legacy.answers.push(bytes(RESPONSE_OPEN, [0xE9], RESPONSE_CLOSE))
  const latin1 = await rpc(app, cookie, 'echo')
  t.equal(latin1.statusCode, 502, 'invalid UTF-8 under an ASCII label is still an error')
  t.equal(latin1.json().code, 'BAD_UPSTREAM_RESPONSE')
  t.match(latin1.json().message, /not valid UTF-8 \(its Content-Type says US-ASCII, read as UTF-8\)/)
})
