import { test } from 'tap'
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, login, rpc, JSON_HEADERS } from '../../helper.js'
import type { Simulator } from '../../../sim/legacy.js'
import { xmlToJson } from '../../../lib/xml.js'
import { DEFAULT_MAX_DEPTH } from '../../../lib/xml-read.js'

// Bad browser input is refused with 400 BAD_REQUEST before anything reaches the legacy server,
// and the session it came on goes on as before.

interface Refusal { url: string, payload: string | Buffer, method?: 'POST' | 'PUT', what: string }

/** Each request is 400 BAD_REQUEST, the simulator sees nothing, and the session still answers on its socket. */
async function refused (t: Test, app: FastifyInstance, sim: Simulator, cookie: string, cases: Refusal[]): Promise<void> {
  const socket = (await rpc(app, cookie, 'whoami')).json().result.socket as number
  for (const c of cases) {
    const before = sim.ledger.length
    const res = await app.inject({ method: c.method ?? 'POST', url: c.url, headers: { ...JSON_HEADERS, cookie }, payload: c.payload })
    t.equal(res.statusCode, 400, `${c.what}: 400`)
    t.equal(res.json().code, 'BAD_REQUEST', `${c.what}: BAD_REQUEST (${res.json().message as string})`)
    t.equal(sim.ledger.length, before, `${c.what}: nothing reached the legacy server`)
  }
  const after = await rpc(app, cookie, 'whoami')
  t.equal(after.statusCode, 200, 'the session goes on')
  t.equal(after.json().result.socket, socket, 'on the same socket')
}

const bytes = (...parts: Array<string | number[]>): Buffer =>
  Buffer.concat(parts.map(p => typeof p === 'string' ? Buffer.from(p) : Buffer.from(p)))

test('JSON that is not valid UTF-8 is refused, not decoded with U+FFFD', async (t) => {
  const { app, sim } = await build(t)
  const cookie = await login(app, 'alice')
  await refused(t, app, sim, cookie, [
    // The simulator accepts a password equal to the user name: repaired to "al\uFFFDice" it would
    // reach the legacy login (and fail there); refused, it reaches nothing.
    { url: '/api/login', payload: bytes('{"username":"alice","password":"al', [0xFF], 'ice"}'), what: 'login, a stray 0xFF' },
    { url: '/api/rpc/echo', payload: bytes('["caf', [0xC3], '"]'), what: 'rpc, a truncated sequence' },
    { url: '/api/rpc/echo', payload: bytes('["', [0xC0, 0xAF], '"]'), what: 'rpc, an overlong encoding' },
    { url: '/api/rpc/echo', payload: bytes('["', [0xED, 0xA0, 0x80], '"]'), what: 'rpc, an encoded surrogate' },
    { url: '/api/xml/xml/echo', payload: bytes('{"order":"', [0xFE], '"}'), what: 'xml, a stray 0xFE' }
  ])
  t.equal(app.sessions.size, 1, 'the refused login opened no session')

  const ok = await rpc(app, cookie, 'echo', ['café 压力 😀'])
  t.equal(ok.statusCode, 200, 'valid UTF-8 passes')
  t.same(ok.json().result, ['café 压力 😀'])
  const bom = await app.inject({ method: 'POST', url: '/api/rpc/echo', headers: { ...JSON_HEADERS, cookie }, payload: bytes([0xEF, 0xBB, 0xBF], '["x"]') })
  t.equal(bom.statusCode, 200, 'a UTF-8 byte order mark is still accepted')
  const empty = await app.inject({ method: 'POST', url: '/api/rpc/whoami', headers: { ...JSON_HEADERS, cookie } })
  t.equal(empty.statusCode, 200, 'an empty body is still "no body"')
})

test('a number outside double range is refused on both routes, not sent as "Infinity"', async (t) => {
  const { app, sim } = await build(t)
  const cookie = await login(app, 'alice')
  await refused(t, app, sim, cookie, [
    { url: '/api/rpc/echo', payload: '[1e400]', what: 'rpc, 1e400' },
    { url: '/api/rpc/echo', payload: '{"params":[{"a":[-1e400]}]}', what: 'rpc, -1e400 nested' },
    { url: '/api/xml/xml/echo', payload: '{"order":{"qty":1e400}}', what: 'xml, 1e400 as text' },
    { url: '/api/xml/xml/echo', payload: '{"order":{"@qty":-1e400}}', what: 'xml, -1e400 as an attribute' },
    { url: '/api/xml/xml/echo', method: 'PUT', payload: '{"order":{"#text":1e400,"id":"7"}}', what: 'xml, 1e400 as #text' }
  ])
  const finite = await app.inject({ method: 'POST', url: '/api/xml/xml/echo', headers: { ...JSON_HEADERS, cookie }, payload: '{"order":{"qty":1e300}}' })
  t.equal(finite.statusCode, 200, 'a large finite number still passes')
  t.match(sim.lastXmlRequest?.body.toString(), /<qty>1e\+300<\/qty>/)
})

/** `levels` of JSON nesting, alternating array and object, around a string. */
function nest (levels: number): unknown {
  let value: unknown = 'deep'
  for (let i = 1; i < levels; i++) value = i % 2 === 0 ? { a: value } : [value]
  return levels === 0 ? value : [value]
}

test('/api/rpc: nesting the gateway could not decode back is refused before it is sent', async (t) => {
  const { app, sim } = await build(t)
  const cookie = await login(app, 'alice')
  // The body is the params list: the simulator's echo answers with exactly that array.
  const deepest = nest(DEFAULT_MAX_DEPTH) as unknown[]
  const before = sim.ledger.length
  const ok = await rpc(app, cookie, 'echo', deepest)
  t.equal(ok.statusCode, 200, `${DEFAULT_MAX_DEPTH} levels, the params list included: sent and decoded back`)
  t.strictSame(ok.json().result, deepest, 'exactly')
  t.equal(sim.ledger.length, before + 1)
  const wrapped = await app.inject({ method: 'POST', url: '/api/rpc/echo', headers: { ...JSON_HEADERS, cookie }, payload: { params: deepest } })
  t.equal(wrapped.statusCode, 200, 'the {"params": […]} form counts the same')

  await refused(t, app, sim, cookie, [
    { url: '/api/rpc/echo', payload: JSON.stringify(nest(DEFAULT_MAX_DEPTH + 1)), what: `${DEFAULT_MAX_DEPTH + 1} levels` },
    { url: '/api/rpc/echo', payload: JSON.stringify({ params: nest(DEFAULT_MAX_DEPTH + 1) }), what: `${DEFAULT_MAX_DEPTH + 1} levels, {"params": […]}` },
    // (written out: JSON.stringify itself would overflow the stack)
    { url: '/api/rpc/echo', payload: '['.repeat(10_000) + ']'.repeat(10_000), what: '10,000 levels' }
  ])
})

test('/api/xml: a JSON body nested deeper than the gateway decodes XML is refused before it is sent', async (t) => {
  const { app, sim } = await build(t)
  const cookie = await login(app, 'alice')
  /** `levels` elements from the root to the innermost one. */
  const elements = (levels: number): Record<string, unknown> => {
    let value: unknown = 'deep'
    for (let i = 1; i < levels; i++) value = { [i % 2 === 0 ? 'a' : 'b']: value }
    return { root: value }
  }
  const deepest = elements(DEFAULT_MAX_DEPTH)
  const ok = await app.inject({ method: 'POST', url: '/api/xml/xml/echo', headers: { ...JSON_HEADERS, cookie }, payload: deepest })
  t.equal(ok.statusCode, 200, `${DEFAULT_MAX_DEPTH} element levels: sent`)
  const sent = sim.lastXmlRequest?.body.toString() ?? ''
  t.strictSame(xmlToJson(sent), deepest, 'and what was sent comes back through the gateway\'s XML decoder exactly')
  t.equal(ok.json().echo.body, sent, '(the simulator saw that document)')

  await refused(t, app, sim, cookie, [
    { url: '/api/xml/xml/echo', payload: JSON.stringify(elements(DEFAULT_MAX_DEPTH + 1)), what: `${DEFAULT_MAX_DEPTH + 1} element levels` },
    { url: '/api/xml/xml/echo', payload: '{"a":'.repeat(10_000) + '""' + '}'.repeat(10_000), what: '10,000 element levels' }
  ])
})
