import { test } from 'tap'
import { createServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import iconv from 'iconv-lite'
import { build, login, rpc, cookieHeader, JSON_HEADERS } from '../../helper.js'
import { encodeResponse } from '../../../lib/xmlrpc.js'

interface Answer { status: number, headers: IncomingHttpHeaders, body: string }

/**
 * One request with its target exactly as written (fetch and inject would normalise it first), on
 * its own socket, bounded in time and bytes.
 */
async function send (base: string, opts: { path: string, method?: string, headers?: Record<string, string>, body?: string }): Promise<Answer> {
  const { hostname, port } = new URL(base)
  return await new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, method: opts.method ?? 'GET', path: opts.path, headers: opts.headers ?? {}, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size > 1024 * 1024) req.destroy(new Error('answer too large'))
        else chunks.push(chunk)
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error('no answer within 5 s')))
    req.on('error', reject)
    req.end(opts.body)
  })
}

function errorCode (answer: Answer): string | undefined {
  return (JSON.parse(answer.body) as { code?: string }).code
}

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

test('an absolute-form target reaches the legacy server as the path and query after the prefix', async (t) => {
  const { app, sim, url } = await build(t, { listen: true })
  const cookie = await login(app, 'alice')
  sim.clearLedger()
  const get = await send(url, { path: `${url}/api/xml/xml/device?id=p3`, headers: { cookie } })
  t.equal(get.status, 200)
  t.strictSame(JSON.parse(get.body), { device: P3 })
  t.same(sim.ledger.map(e => e.method), ['GET /xml/device?id=p3'], 'the legacy server saw the path, not the authority')

  const put = await send(url, { method: 'PUT', path: `${url.replace('http:', 'HTTP:')}/api/xml/xml/echo?x=1&y=%zz`, headers: { cookie, 'content-type': 'application/xml' }, body: '<a/>' })
  t.equal(put.status, 200)
  t.equal(sim.lastXmlRequest?.path, '/xml/echo?x=1&y=%zz', 'the query passes unchanged')

  const origin = await send(url, { path: '/api/%78ml/xml/./device/../devices?z=%41', headers: { cookie } })
  t.equal(origin.status, 200, 'an escaped prefix and dot segments, in origin form')
  t.equal(sim.ledger.at(-1)?.method, 'GET /xml/devices?z=%41')
})

test('a path that cannot become a legacy path is 400 BAD_REQUEST: nothing sent, no error logged, the session kept', async (t) => {
  const lines: string[] = []
  const { app, sim, url } = await build(t, { listen: true, logStream: { write: (line: string) => lines.push(line) } })
  const cookie = await login(app, 'alice')
  sim.clearLedger()
  for (const path of [
    '/api/xml/xml\\devices', '/api/xml/\\\\evil.example/x', '/api/xml/xml%2Fdevices', '/api/xml/xml%2fdevices',
    '/api/xml/xml%5Cdevices', '/api/xml/xml/devices%00.xml', '/api/xml/xml/%0d%0aX-Injected:%201', '/api/xml/xml/%zz',
    '/api/xml/xml/devices%'
  ]) {
    const res = await send(url, { path, headers: { cookie } })
    t.equal(res.status, 400, path)
    t.equal(errorCode(res), 'BAD_REQUEST', `${path}: BAD_REQUEST`)
  }
  t.same(sim.ledger, [], 'nothing reached the legacy server')
  t.same(lines.filter(line => (JSON.parse(line) as { level: number }).level >= 50), [], 'no error-level log line')
  const ok = await send(url, { path: '/api/xml/xml/devices', headers: { cookie } })
  t.equal(ok.status, 200, 'the session goes on')
})

test('the XML-RPC endpoint itself is 403 FORBIDDEN under every spelling, and nothing is sent', async (t) => {
  const { app, sim, url } = await build(t, { listen: true })
  const cookie = await login(app, 'alice')
  const whoami = '<?xml version="1.0"?><methodCall><methodName>whoami</methodName><params/></methodCall>'
  sim.clearLedger()
  for (const path of [
    '/api/xml/RPC2', '/api/xml/rpc2', '/api/xml/Rpc2/', '/api/xml/RPC2//', '/api/xml//RPC2', '/api/xml/RPC2;jsessionid=1',
    '/api/xml/%52PC2', '/api/xml/%2552PC2', '/api/xml/xml/../RPC2', '/api/xml/xml/%2e%2e/RPC2', '/api/xml/x/..;/RPC2',
    '/api/xml/RPC2.', '/api/xml/RPC2?x=1', `${url}/api/xml/RPC2`
  ]) {
    const res = await send(url, { method: 'POST', path, headers: { cookie, 'content-type': 'text/xml' }, body: whoami })
    t.equal(res.status, 403, path)
    t.equal(errorCode(res), 'FORBIDDEN', `${path}: FORBIDDEN`)
  }
  const get = await send(url, { path: '/api/xml/RPC2', headers: { cookie } })
  t.equal(get.status, 403, 'any method')
  t.same(sim.ledger, [], 'nothing reached the legacy server')
  const res = await rpc(app, cookie, 'whoami')
  t.equal(res.statusCode, 200, 'the session goes on')
  t.equal(res.json().result.user, 'alice')
  const near = await send(url, { path: '/api/xml/RPC2x', headers: { cookie } })
  t.equal(near.status, 404, 'a neighbouring path is not the endpoint: it goes through')
})

test('browser headers reach the legacy server from the short list and LEGACY_FORWARD_HEADERS only', async (t) => {
  // The Origin is listed, so that this write passes the cross-origin check and its headers can be seen.
  const { app, sim } = await build(t, { env: { LEGACY_FORWARD_HEADERS: 'X-Tenant, x-trace', ALLOWED_ORIGINS: 'https://app.example.com' } })
  const cookie = await login(app, 'alice')
  const res = await app.inject({
    method: 'POST',
    url: '/api/xml/xml/echo',
    headers: {
      ...JSON_HEADERS,
      cookie: `${cookie}; other=1`,
      authorization: 'Basic YWxpY2U6YWxpY2U=',
      'proxy-authorization': 'Basic eDp5',
      'x-remote-user': 'admin',
      'x-forwarded-user': 'admin',
      'x-real-ip': '10.0.0.1',
      'x-forwarded-for': '10.0.0.1',
      forwarded: 'for=10.0.0.1',
      'x-invented': 'yes',
      origin: 'https://app.example.com',
      'accept-language': 'zh-CN',
      'accept-charset': 'utf-8',
      'accept-encoding': 'gzip, br',
      'if-none-match': '"v1"',
      'if-modified-since': 'Mon, 01 Jan 2024 00:00:00 GMT',
      'user-agent': 'console/1',
      'x-request-id': 'req-42',
      'x-tenant': 'plant-7',
      'x-trace': 't1'
    },
    payload: { q: 'x' }
  })
  t.equal(res.statusCode, 200)
  const seen = sim.lastXmlRequest?.headers ?? {}
  for (const name of ['cookie', 'authorization', 'proxy-authorization', 'x-remote-user', 'x-forwarded-user', 'x-real-ip', 'x-forwarded-for', 'forwarded', 'x-invented', 'origin']) {
    t.equal(seen[name], undefined, `${name} is not forwarded`)
  }
  t.equal(seen['accept-language'], 'zh-CN')
  t.equal(seen['accept-charset'], 'utf-8')
  t.equal(seen['accept-encoding'], 'identity', 'the answer is asked for uncompressed')
  t.equal(seen['if-none-match'], '"v1"')
  t.equal(seen['if-modified-since'], 'Mon, 01 Jan 2024 00:00:00 GMT')
  t.equal(seen['user-agent'], 'console/1')
  t.equal(seen['x-request-id'], 'req-42', 'the request id')
  t.equal(seen['x-tenant'], 'plant-7', 'LEGACY_FORWARD_HEADERS')
  t.equal(seen['x-trace'], 't1')
  t.match(seen['content-type'], /^text\/xml/)

  const unsafe = await app.inject({ url: '/api/xml/xml/echo', method: 'PUT', headers: { cookie, 'content-type': 'text/xml', 'x-request-id': 'a b<script>' }, payload: '<a/>' })
  t.equal(unsafe.statusCode, 200)
  t.equal(sim.lastXmlRequest?.headers['x-request-id'], unsafe.headers['x-request-id'], 'an unsafe id is replaced by the gateway\'s, the same in both logs')
  t.not(unsafe.headers['x-request-id'], 'a b<script>')
})

test('legacy answer headers reach the browser from the representation headers and LEGACY_EXPOSE_HEADERS only', async (t) => {
  const legacy = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      if (req.url === '/RPC2') {
        res.writeHead(200, { 'content-type': 'text/xml' })
        res.end(encodeResponse('welcome'))
        return
      }
      res.writeHead(200, {
        'content-type': 'text/xml; charset=utf-8',
        'access-control-allow-origin': 'https://evil.example.com',
        'access-control-allow-credentials': 'true',
        'access-control-expose-headers': '*',
        'set-cookie': 'legacy=1; Path=/',
        'x-legacy-secret': 'internal',
        'x-powered-by': 'Legacy/1.0',
        server: 'legacy',
        'x-legacy-version': '7',
        'cache-control': 'private, max-age=60',
        etag: '"v1"',
        'last-modified': 'Mon, 01 Jan 2024 00:00:00 GMT',
        'content-language': 'zh-CN',
        'content-disposition': 'inline',
        vary: 'Accept-Language'
      })
      res.end('<a>1</a>')
    })
  })
  legacy.keepAliveTimeout = 0
  await new Promise<void>(resolve => legacy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { legacy.closeAllConnections(); legacy.close() })
  const { port } = legacy.address() as AddressInfo
  const { app } = await build(t, { env: { LEGACY_URL: `http://127.0.0.1:${port}/RPC2`, LEGACY_EXPOSE_HEADERS: 'X-Legacy-Version' } })
  const cookie = await login(app, 'alice')

  for (const accept of ['application/json', 'application/xml']) {
    const res = await app.inject({ url: '/api/xml/doc', headers: { cookie, accept } })
    t.equal(res.statusCode, 200)
    for (const name of ['access-control-allow-origin', 'access-control-allow-credentials', 'access-control-expose-headers', 'set-cookie', 'x-legacy-secret', 'x-powered-by', 'server']) {
      t.equal(res.headers[name], undefined, `${accept}: ${name} is not passed`)
    }
    t.equal(res.headers['x-legacy-version'], '7', 'LEGACY_EXPOSE_HEADERS')
    t.equal(res.headers['cache-control'], 'private, max-age=60')
    t.equal(res.headers.etag, '"v1"')
    t.equal(res.headers['last-modified'], 'Mon, 01 Jan 2024 00:00:00 GMT')
    t.equal(res.headers['content-language'], 'zh-CN')
    t.equal(res.headers['content-disposition'], 'inline')
    t.equal(res.headers.vary, 'Accept, Accept-Language', 'the answer depends on Accept, and on what the legacy server said')
    t.ok(res.headers['x-request-id'], 'the gateway\'s own headers stay')
  }
})

test('a legacy answer is one user\'s: never marked for shared caches', async (t) => {
  let cacheControl: string | undefined
  const legacy = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      if (req.url === '/RPC2') {
        res.writeHead(200, { 'content-type': 'text/xml' })
        res.end(encodeResponse('welcome'))
        return
      }
      res.writeHead(200, { 'content-type': 'text/xml', ...(cacheControl === undefined ? {} : { 'cache-control': cacheControl }) })
      res.end('<a>1</a>')
    })
  })
  legacy.keepAliveTimeout = 0
  await new Promise<void>(resolve => legacy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { legacy.closeAllConnections(); legacy.close() })
  const { port } = legacy.address() as AddressInfo
  const { app } = await build(t, { env: { LEGACY_URL: `http://127.0.0.1:${port}/RPC2` } })
  const cookie = await login(app, 'alice')
  const cases: Array<[string | undefined, string]> = [
    [undefined, 'private'],
    ['public, max-age=60, s-maxage=600', 'private, max-age=60'],
    ['max-age=60, proxy-revalidate', 'private, max-age=60, proxy-revalidate'],
    ['private, max-age=5', 'private, max-age=5'],
    ['no-store', 'no-store'],
    ['Public', 'private']
  ]
  for (const [legacyValue, expected] of cases) {
    cacheControl = legacyValue
    const res = await app.inject({ url: '/api/xml/doc', headers: { cookie } })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['cache-control'], expected, `legacy ${legacyValue ?? '(none)'}`)
  }
})

test('every /api/xml/* answer says Vary: Accept', async (t) => {
  const { app } = await build(t)
  const cookie = await login(app, 'alice')
  for (const [url, accept] of [['/api/xml/xml/devices', 'application/json'], ['/api/xml/xml/devices', 'application/xml'], ['/api/xml/xml/text', '*/*'], ['/api/xml/xml/nothing', '*/*']] as const) {
    const res = await app.inject({ url, headers: { cookie, accept } })
    t.equal(res.headers.vary, 'Accept', `${url} (${accept})`)
  }
})
