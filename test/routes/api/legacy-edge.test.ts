import { test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { eventually, build, login, rpc, JSON_HEADERS } from '../../helper.js'
import { encodeResponse } from '../../../lib/xmlrpc.js'
import { httpAnswer, methodOf, rpcAnswer, startHostileLegacy, trickle, type RawRequest, type Step } from '../../hostile-legacy.js'

// The legacy edge against a peer that is slow, sloppy or hostile at the HTTP level (raw sockets,
// test/hostile-legacy.ts). LEGACY_TIMEOUT_MS is a deadline for the whole answer: 1 s here, while
// the peer would go on for far longer.

const TIMEOUT_MS = 1000
// Scheduling slack on a shared, loaded machine; the peer's own stalling runs 10× longer than this.
const SLACK_MS = 1500

/** Headers at once, then the body one byte every 500 ms (with Content-Length): 10+ s in all. */
function tricklingAnswer (value: string): Step[] {
  const whole = rpcAnswer(value)
  const split = whole.indexOf('\r\n\r\n') + 4
  return [whole.subarray(0, split), ...trickle(whole.subarray(split, split + 24), 500)]
}

/** The same as a chunked body: one chunk of one byte every 500 ms, never the last chunk. */
function tricklingChunks (): Step[] {
  const steps: Step[] = ['HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ntransfer-encoding: chunked\r\n\r\n']
  const body = encodeResponse('never finished')
  for (let i = 0; i < 24; i++) steps.push({ wait: 500 }, `1\r\n${body[i] ?? ' '}\r\n`)
  return steps
}

/** `102 Processing` every 500 ms, and never the answer. */
function endlessProcessing (): Step[] {
  const steps: Step[] = []
  for (let i = 0; i < 24; i++) steps.push('HTTP/1.1 102 Processing\r\n\r\n', { wait: 500 })
  return steps
}

async function timed<T> (p: Promise<T>): Promise<{ value: T, ms: number }> {
  const started = Date.now()
  const value = await p
  return { value, ms: Date.now() - started }
}

/** Sockets that carried requests (the readiness probe only connects). */
function socketsUsed (requests: RawRequest[]): number {
  return new Set(requests.map(r => r.socketId)).size
}

const stalls: Array<[string, () => Step[]]> = [
  ['a body trickled byte by byte (Content-Length)', () => tricklingAnswer('slow')],
  ['a chunked body trickled chunk by chunk', tricklingChunks],
  ['102 Processing every 500 ms', endlessProcessing]
]

for (const [name, stall] of stalls) {
  test(`${name}: 504 UPSTREAM_TIMEOUT within LEGACY_TIMEOUT_MS, socket closed, session lost, calls behind answered`, async (t) => {
    const legacy = await startHostileLegacy(t, (req) => methodOf(req) === 'stall' ? stall() : undefined)
    const { app } = await build(t, { env: { LEGACY_URL: legacy.url, LEGACY_TIMEOUT_MS: String(TIMEOUT_MS) } })
    const cookie = await login(app, 'alice')
    const [stalled, behind] = await Promise.all([
      timed(rpc(app, cookie, 'stall')),
      // Queued behind the stalled call on the same socket: never sent, answered with the session's end.
      timed(sleep(50).then(async () => await rpc(app, cookie, 'whoami')))
    ])
    t.equal(stalled.value.statusCode, 504)
    t.equal(stalled.value.json().code, 'UPSTREAM_TIMEOUT')
    t.ok(stalled.ms < TIMEOUT_MS + SLACK_MS, `answered after ${stalled.ms} ms (deadline ${TIMEOUT_MS} ms)`)
    t.ok(stalled.ms >= TIMEOUT_MS - 50, 'not before the deadline')
    t.ok(behind.ms < TIMEOUT_MS + SLACK_MS, `the call queued behind answered after ${behind.ms} ms`)
    t.ok([401, 504].includes(behind.value.statusCode), `the call queued behind gets the session's end (${behind.value.statusCode})`)
    t.ok(['SESSION_LOST', 'UPSTREAM_TIMEOUT'].includes(behind.value.json().code))
    t.equal(legacy.requests.filter(r => methodOf(r) === 'whoami').length, 0, 'the call behind never reached the legacy server')
    t.ok(await eventually(() => legacy.open() === 0), 'the pinned socket is closed')
    const after = await rpc(app, cookie, 'whoami')
    t.equal(after.statusCode, 401)
    t.equal(after.json().code, 'SESSION_LOST')
    t.equal(socketsUsed(legacy.requests), 1, 'no second socket was opened')
  })
}

test('the deadline also bounds /api/xml/*, login, logout and the heartbeat', async (t) => {
  const legacy = await startHostileLegacy(t)
  const { app } = await build(t, {
    env: { LEGACY_URL: legacy.url, LEGACY_TIMEOUT_MS: String(TIMEOUT_MS), LEGACY_HEARTBEAT_METHOD: 'ping', LEGACY_HEARTBEAT_MS: '300' }
  })

  await t.test('/api/xml/*', async (t) => {
    legacy.setScript((req) => req.target.startsWith('/status') ? tricklingAnswer('x') : undefined)
    const cookie = await login(app, 'xml-user')
    const { value: res, ms } = await timed(app.inject({ url: '/api/xml/status', headers: { cookie } }))
    t.equal(res.statusCode, 504)
    t.equal(res.json().code, 'UPSTREAM_TIMEOUT')
    t.ok(ms < TIMEOUT_MS + SLACK_MS, `answered after ${ms} ms`)
    const after = await rpc(app, cookie, 'whoami')
    t.equal(after.json().code, 'SESSION_LOST')
  })

  await t.test('login', async (t) => {
    legacy.setScript((req) => methodOf(req) === 'login' ? tricklingAnswer('welcome') : undefined)
    const { value: res, ms } = await timed(app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'bob', password: 'bob' } }))
    t.equal(res.statusCode, 504)
    t.equal(res.json().code, 'UPSTREAM_TIMEOUT')
    t.ok(ms < TIMEOUT_MS + SLACK_MS, `answered after ${ms} ms`)
    t.equal(app.sessions.size, 0, 'no session')
  })

  await t.test('logout', async (t) => {
    legacy.setScript(() => undefined)
    const cookie = await login(app, 'carol')
    legacy.setScript((req) => methodOf(req) === 'logout' ? tricklingAnswer('bye') : [rpcAnswer('pong')])
    const open = legacy.open()
    const { value: res, ms } = await timed(app.inject({ method: 'POST', url: '/api/logout', headers: { cookie } }))
    t.equal(res.statusCode, 204)
    t.ok(ms < TIMEOUT_MS + SLACK_MS, `answered after ${ms} ms`)
    t.ok(await eventually(() => legacy.open() === open - 1), 'carol\'s socket is closed')
  })

  await t.test('heartbeat', async (t) => {
    legacy.setScript(() => undefined)
    const cookie = await login(app, 'dave')
    legacy.setScript((req) => methodOf(req) === 'ping' ? tricklingAnswer('pong') : undefined)
    const started = Date.now()
    t.ok(await eventually(() => app.sessions.size === 0, TIMEOUT_MS + 300 + SLACK_MS + 1000), 'the session ends')
    t.ok(Date.now() - started < TIMEOUT_MS + 300 + SLACK_MS + 1000, `within ${Date.now() - started} ms`)
    const after = await rpc(app, cookie, 'whoami')
    t.equal(after.statusCode, 401)
    t.equal(after.json().code, 'SESSION_LOST')
  })
})

test('an endless body is drained only until the deadline', async (t) => {
  const legacy = await startHostileLegacy(t, (req) => {
    if (methodOf(req) !== 'flood') return undefined
    // 16 KiB every 100 ms for 4 s, never the last chunk: past the size bound, and never silent.
    const steps: Step[] = ['HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ntransfer-encoding: chunked\r\n\r\n']
    for (let i = 0; i < 40; i++) steps.push({ wait: 100 }, `4000\r\n${'x'.repeat(0x4000)}\r\n`)
    return steps
  })
  const { app } = await build(t, { env: { LEGACY_URL: legacy.url, LEGACY_TIMEOUT_MS: String(TIMEOUT_MS), UPSTREAM_MAX_RESPONSE_BYTES: '65536' } })
  const cookie = await login(app, 'alice')
  const { value: res, ms } = await timed(rpc(app, cookie, 'flood'))
  t.equal(res.statusCode, 504, 'the deadline ends it, not the end of the body')
  t.equal(res.json().code, 'UPSTREAM_TIMEOUT')
  t.ok(ms < TIMEOUT_MS + SLACK_MS, `after ${ms} ms`)
  t.ok(await eventually(() => legacy.open() === 0), 'the socket is closed')
})

test('a HEAD answered with a body, the body 20 ms after the headers: never read as the next call\'s answer', async (t) => {
  const document = '<status>fine</status>'
  const forged = rpcAnswer('a document the legacy server never sent for whoami')
  const legacy = await startHostileLegacy(t, (req: RawRequest) => {
    if (req.target.startsWith('/status')) {
      // A server that treats HEAD as GET, and whose body bytes are themselves an HTTP answer: read
      // after a bodiless HEAD answer, they would be taken for the answer to the next call.
      const body = req.method === 'HEAD' ? forged : Buffer.from(document)
      const head = `HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: ${body.length}\r\n\r\n`
      return [head, { wait: 20 }, body]
    }
    if (methodOf(req) === 'whoami') return [{ wait: 60 }, rpcAnswer(`you are on socket ${req.socketId}`)]
    return undefined
  })
  const { app } = await build(t, { env: { LEGACY_URL: legacy.url } })
  const cookie = await login(app, 'alice')
  const [head, who] = await Promise.all([
    app.inject({ method: 'HEAD', url: '/api/xml/status', headers: { cookie, accept: 'application/xml' } }),
    rpc(app, cookie, 'whoami')
  ])
  t.equal(head.statusCode, 200)
  t.equal(head.body, '', 'a HEAD answer has no body')
  t.equal(who.statusCode, 200)
  const pinned = legacy.requests.find(r => methodOf(r) === 'login')?.socketId
  t.same(who.json(), { result: `you are on socket ${pinned}` }, 'whoami gets its own answer')
  const sent = legacy.requests.find(r => r.target.startsWith('/status'))
  t.equal(sent?.method, 'GET', 'the browser\'s HEAD went upstream as GET, whose body is read and dropped')
  const again = await rpc(app, cookie, 'whoami')
  t.same(again.json(), { result: `you are on socket ${pinned}` }, 'the socket is still in step')
  t.equal(socketsUsed(legacy.requests), 1)
})

test('an unsolicited 100 Continue before each answer is skipped (RFC 9110 §15.2): login and calls work on one socket', async (t) => {
  // If this fails after an undici upgrade, the parser internal that lib/pinned-upstream.ts adjusts
  // has moved: every answer preceded by 100 Continue would end its session.
  const legacy = await startHostileLegacy(t, (req) => [
    'HTTP/1.1 100 Continue\r\n\r\n',
    { wait: 10 },
    methodOf(req) === 'login' ? rpcAnswer('welcome') : req.target.startsWith('/xml') ? httpAnswer('<ok/>') : rpcAnswer(`did ${methodOf(req)}`)
  ])
  const { app } = await build(t, { env: { LEGACY_URL: legacy.url } })
  const res = await app.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: 'alice', password: 'alice' } })
  t.equal(res.statusCode, 200, 'login works')
  const cookie = res.cookies.map(c => `${c.name}=${c.value}`).join('; ')
  for (const method of ['one', 'two', 'three']) {
    const call = await rpc(app, cookie, method)
    t.equal(call.statusCode, 200)
    t.same(call.json(), { result: `did ${method}` })
  }
  const xml = await app.inject({ url: '/api/xml/xml/doc', headers: { cookie } })
  t.equal(xml.statusCode, 200)
  t.same(xml.json(), { ok: '' })
  t.equal(socketsUsed(legacy.requests), 1, 'all on the pinned socket')
  t.equal(app.sessions.size, 1)
})

test('102 and 103 before an answer are skipped too', async (t) => {
  const legacy = await startHostileLegacy(t, (req) => methodOf(req) === 'login'
    ? undefined
    : ['HTTP/1.1 102 Processing\r\n\r\n', { wait: 10 }, 'HTTP/1.1 103 Early Hints\r\nlink: </a>; rel=preload\r\n\r\n', rpcAnswer('done')])
  const { app } = await build(t, { env: { LEGACY_URL: legacy.url } })
  const cookie = await login(app, 'alice')
  const call = await rpc(app, cookie, 'work')
  t.equal(call.statusCode, 200)
  t.same(call.json(), { result: 'done' })
})

test('bytes that arrive when no answer is expected end the session; they are nobody\'s answer', async (t) => {
  const legacy = await startHostileLegacy(t, (req) => methodOf(req) === 'first'
    ? [rpcAnswer('first answer'), { wait: 30 }, rpcAnswer('a stray answer nobody asked for')]
    : undefined)
  const { app } = await build(t, { env: { LEGACY_URL: legacy.url } })
  const cookie = await login(app, 'alice')
  const first = await rpc(app, cookie, 'first')
  t.same(first.json(), { result: 'first answer' })
  await sleep(100)
  const next = await rpc(app, cookie, 'second')
  t.equal(next.statusCode, 401, 'the socket fell out of step: the session is over')
  t.equal(next.json().code, 'SESSION_LOST')
  t.equal(legacy.requests.filter(r => methodOf(r) === 'second').length, 0)
  t.equal(socketsUsed(legacy.requests), 1)
})

// A 204 has no body, and a 304 none either (RFC 9110 §15.3.5, §15.4.5): a server that declares one
// anyway (a framework that writes its body regardless of the status) sends bytes that the next
// call, already on the wire, would read as its answer. Content-Length on a 304 is allowed (it
// describes the representation not sent), so only these mark the socket as out of step.
const lyingFraming: Array<[string, string]> = [
  ['a 204 with a Content-Length', 'HTTP/1.1 204 No Content\r\ncontent-length: {n}\r\n\r\n'],
  ['a 204 with Transfer-Encoding', 'HTTP/1.1 204 No Content\r\ntransfer-encoding: chunked\r\n\r\n'],
  ['a 304 with Transfer-Encoding', 'HTTP/1.1 304 Not Modified\r\netag: "v1"\r\ntransfer-encoding: chunked\r\n\r\n']
]

for (const [name, head] of lyingFraming) {
  test(`${name} and a body after it: the answer is passed on, the socket ends; the body is nobody's answer`, async (t) => {
    const forged = rpcAnswer('a document the legacy server never sent for whoami')
    const legacy = await startHostileLegacy(t, (req: RawRequest) => {
      if (req.target.startsWith('/thing')) return [head.replace('{n}', String(forged.length)), { wait: 20 }, forged]
      if (methodOf(req) === 'whoami') return [{ wait: 60 }, rpcAnswer(`you are on socket ${req.socketId}`)]
      return undefined
    })
    const { app } = await build(t, { env: { LEGACY_URL: legacy.url } })
    const cookie = await login(app, 'alice')
    const [thing, who] = await Promise.all([
      app.inject({ method: 'GET', url: '/api/xml/thing', headers: { cookie, 'if-none-match': '"v1"' } }),
      sleep(5).then(async () => await rpc(app, cookie, 'whoami'))
    ])
    t.equal(thing.statusCode, Number(head.slice(9, 12)), 'the answer itself reaches the browser')
    t.equal(thing.body, '', 'without a body')
    t.not(who.json().result, 'a document the legacy server never sent for whoami', 'the bytes after it are nobody\'s answer')
    t.equal(who.statusCode, 401, 'the call behind it gets the session\'s end')
    t.equal(who.json().code, 'SESSION_LOST')
    t.equal(legacy.requests.filter(r => methodOf(r) === 'whoami').length, 0, 'and never went on the socket')
    t.ok(await eventually(() => legacy.open() === 0), 'the pinned socket is closed')
    t.equal(socketsUsed(legacy.requests), 1, 'no second socket was opened')
  })
}

test('a 304 with a Content-Length and a 204 with Content-Length: 0 are in order: the session goes on', async (t) => {
  const legacy = await startHostileLegacy(t, (req: RawRequest) => {
    if (req.target.startsWith('/cached')) return ['HTTP/1.1 304 Not Modified\r\netag: "v1"\r\ncontent-length: 1234\r\n\r\n']
    if (req.target.startsWith('/empty')) return ['HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n']
    if (methodOf(req) === 'whoami') return [rpcAnswer(`you are on socket ${req.socketId}`)]
    return undefined
  })
  const { app } = await build(t, { env: { LEGACY_URL: legacy.url } })
  const cookie = await login(app, 'alice')
  const cached = await app.inject({ url: '/api/xml/cached', headers: { cookie, 'if-none-match': '"v1"' } })
  t.equal(cached.statusCode, 304, `a 304 with a Content-Length is passed on: ${cached.body}`)
  const empty = await app.inject({ url: '/api/xml/empty', headers: { cookie } })
  t.equal(empty.statusCode, 204, `a 204 with Content-Length: 0: ${empty.body}`)
  const who = await rpc(app, cookie, 'whoami')
  t.equal(who.statusCode, 200)
  const pinned = legacy.requests.find(r => methodOf(r) === 'login')?.socketId
  t.same(who.json(), { result: `you are on socket ${pinned}` })
  t.equal(socketsUsed(legacy.requests), 1)
})

// llhttp never repairs framing; what it refuses is a bad answer (502) to the call that got it, and
// the end of the session (nothing later on that socket can be placed).
const unframeable: Array<[string, string]> = [
  ['Content-Length beside Transfer-Encoding', 'HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: 10\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'],
  ['two different Content-Lengths', 'HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: 5\r\ncontent-length: 7\r\n\r\nhello!!'],
  ['a status line that is not HTTP', 'HTTX/1.1 200 OK\r\n\r\n'],
  ['a chunk size that is not hexadecimal', 'HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n']
]

for (const [name, bytes] of unframeable) {
  test(`${name}: 502 BAD_UPSTREAM_RESPONSE for the call, then the session is over`, async (t) => {
    const legacy = await startHostileLegacy(t, (req: RawRequest) => methodOf(req) === 'bad' || req.target.startsWith('/bad') ? [bytes] : undefined)
    const { app } = await build(t, { env: { LEGACY_URL: legacy.url } })
    for (const route of ['rpc', 'xml']) {
      const cookie = await login(app, `alice-${route}`)
      const res = route === 'rpc' ? await rpc(app, cookie, 'bad') : await app.inject({ url: '/api/xml/bad', headers: { cookie } })
      t.equal(res.statusCode, 502, `${route}: ${res.body}`)
      t.equal(res.json().code, 'BAD_UPSTREAM_RESPONSE')
      const after = await rpc(app, cookie, 'whoami')
      t.equal(after.statusCode, 401, `${route}: the session is over`)
      t.equal(after.json().code, 'SESSION_LOST')
    }
    t.ok(await eventually(() => legacy.open() === 0), 'the pinned sockets are closed')
    t.equal(legacy.requests.filter(r => methodOf(r) === 'whoami').length, 0, 'nothing more was sent on them')
    t.equal(app.sessions.size, 0)
  })
}
