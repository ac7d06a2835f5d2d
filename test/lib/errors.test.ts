import { test } from 'tap'
import { readFileSync } from 'node:fs'
import { STATUS_CODES } from 'node:http'
import { fileURLToPath } from 'node:url'
import * as errors from '../../lib/errors.js'
import {
  CALL_OUTCOMES, CODE_BY_STATUS, CONTRACT_CODES, ERRORS, RpcFault, codeOf, errorBody, isErrorCode, outcomeOf,
  type ErrorCode
} from '../../lib/errors.js'
import { STATUS_OF } from '../chaos/invariants.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const CODES = Object.keys(ERRORS).filter(isErrorCode)
const GATEWAY_OWN = ['METHOD_NOT_ALLOWED', 'INTERNAL_ERROR']

/** The text of a Markdown section, from its heading to the next heading of the same level. */
function section (file: string, heading: string): string {
  const text = readFileSync(ROOT + file, 'utf8')
  const start = text.indexOf(`\n${heading}\n`)
  if (start === -1) throw new Error(`${file} has no section ${heading}`)
  const level = heading.split(' ')[0] as string
  const end = text.indexOf(`\n${level} `, start + heading.length + 1)
  return text.slice(start, end === -1 ? undefined : end)
}

/** The error classes lib/errors.ts exports, by code. */
function classes (): Map<string, unknown> {
  const found = new Map<string, unknown>()
  for (const [name, value] of Object.entries(errors)) {
    if (typeof value !== 'function' || !/^[A-Z]/.test(name)) continue
    try {
      const err: unknown = value === RpcFault ? new RpcFault(1, 'x') : Reflect.construct(value, ['x'])
      const code = codeOf(err)
      if (code !== undefined) found.set(code, value)
    } catch {}
  }
  return found
}

test('every entry: an error status, a message, at most one code per status for errors from elsewhere', async (t) => {
  for (const code of CODES) {
    const e = ERRORS[code]
    t.ok(e.status >= 400 && e.status < 600 && STATUS_CODES[e.status] !== undefined, `${code}: ${e.status} is an HTTP error status`)
    t.ok(e.message.length > 0, `${code}: has a message`)
    t.ok((e.message.match(/%/g) ?? []).length <= 1, `${code}: at most one %s (the class takes one detail)`)
  }
  const byStatus = CODES.filter(code => 'byStatus' in ERRORS[code])
  t.equal(CODE_BY_STATUS.size, byStatus.length, 'no two byStatus codes share a status')
  for (const code of byStatus) {
    t.ok(ERRORS[code].status < 500, `${code}: byStatus is for 4xx only`)
    t.equal(CODE_BY_STATUS.get(ERRORS[code].status), code)
  }
  t.equal(CODE_BY_STATUS.get(405), 'METHOD_NOT_ALLOWED', 'a 405 is not NOT_FOUND')
  t.equal(CODE_BY_STATUS.get(404), 'NOT_FOUND')
  t.equal(CODE_BY_STATUS.get(400), 'BAD_REQUEST')
})

test('the contract codes: the table without the gateway\'s own, each with the status CONTRACT §3 gives it', async (t) => {
  t.strictSame([...CONTRACT_CODES].sort(), CODES.filter(c => !GATEWAY_OWN.includes(c)).sort())
  t.strictSame([...CONTRACT_CODES].sort(), Object.keys(STATUS_OF).sort(), 'the chaos run\'s list of the contract is the same')
  for (const code of CONTRACT_CODES) {
    if (isErrorCode(code)) t.equal(ERRORS[code].status, STATUS_OF[code], `${code}: ${ERRORS[code].status}`)
  }
  t.equal(ERRORS.METHOD_NOT_ALLOWED.status, 405)
  t.strictSame(errorBody('INTERNAL_ERROR', ERRORS.INTERNAL_ERROR.message),
    { statusCode: 500, code: 'INTERNAL_ERROR', error: 'Internal Server Error', message: 'Internal error' })
})

test('the classes: one per code something throws, built from the table, thrown with { cause }', async (t) => {
  const thrown = classes()
  // No class for what nothing throws: these are answered from the table alone (plugins/errors.ts).
  t.strictSame([...thrown.keys()].sort(), CODES.filter(c => !['NOT_FOUND', 'METHOD_NOT_ALLOWED', 'PAYLOAD_TOO_LARGE', 'INTERNAL_ERROR'].includes(c)).sort())

  const cause = new Error('ECONNREFUSED')
  const err = new errors.UpstreamUnavailable('connect ECONNREFUSED', { cause })
  t.equal(err.code, 'UPSTREAM_UNAVAILABLE')
  t.equal(err.statusCode, 503)
  t.equal(err.message, 'The legacy server cannot be reached: connect ECONNREFUSED')
  t.equal(err.cause, cause)
  t.ok(err instanceof errors.UpstreamUnavailable)
  t.notOk(err instanceof errors.UpstreamTimeout)
  t.equal(new errors.SessionBusy(256).message, 'Too many calls are waiting on this session (limit 256): retry later')
  t.equal(new errors.ShuttingDown().message, ERRORS.SHUTTING_DOWN.message, 'a message without %s is the template')
  t.equal(new errors.Unauthenticated({ cause }).cause, cause, '{ cause } without a detail')
  t.equal(codeOf(new Error('plain')), undefined)
  t.equal(codeOf(Object.assign(new Error('x'), { code: 'FST_ERR_VALIDATION' })), undefined)
  t.equal(codeOf('RPC_FAULT'), undefined)
  t.equal(codeOf(Object.assign(new Error('x'), { code: 'SESSION_LOST', statusCode: 401 })), undefined, 'an error that only says its code is not one')
})

test('RpcFault is a class of its own that carries the faultCode', async (t) => {
  const fault = new RpcFault(42, 'pump offline')
  t.ok(fault instanceof RpcFault)
  t.ok(fault instanceof Error)
  t.equal(fault.faultCode, 42)
  t.ok(Object.hasOwn(fault, 'faultCode'))
  t.equal(fault.code, 'RPC_FAULT')
  t.equal(fault.statusCode, 422)
  t.equal(fault.message, 'pump offline', 'the faultString, as sent')
  t.equal(new RpcFault(-1, '100% %s %d').message, '100% %s %d', 'a faultString is not a format')
  t.equal(codeOf(fault), 'RPC_FAULT')
  t.notOk(new errors.BadRequest('x') instanceof RpcFault)
})

test('the outcome of a failed legacy call comes from the table; anything unexpected is a bad answer', async (t) => {
  t.equal(outcomeOf(new RpcFault(1, 'x')), 'fault')
  t.equal(outcomeOf(new errors.UpstreamTimeout(30000)), 'timeout')
  t.equal(outcomeOf(new errors.SessionLost('closed')), 'lost')
  t.equal(outcomeOf(new errors.SessionBusy(1)), 'busy')
  t.equal(outcomeOf(new errors.UpstreamUnavailable('x')), 'unavailable')
  t.equal(outcomeOf(new errors.BadRequest('x')), 'bad_request')
  t.equal(outcomeOf(new errors.BadUpstreamResponse('x')), 'bad_response')
  t.equal(outcomeOf(new TypeError('a decoder bug')), 'bad_response')
  t.equal(outcomeOf(undefined), 'bad_response')

  t.equal(CALL_OUTCOMES[0], 'ok')
  t.equal(new Set(CALL_OUTCOMES).size, CALL_OUTCOMES.length, 'each label once')
  t.strictSame([...CALL_OUTCOMES].sort(),
    ['ok', ...new Set(CODES.flatMap(c => { const e = ERRORS[c]; return 'outcome' in e ? [e.outcome] : [] }))].sort())
  const metrics = section('docs/OPERATIONS.md', '## Metrics')
  const documented = /`outcome`: ([a-z_, ]+) \|/.exec(metrics)?.[1]?.split(', ')
  t.strictSame(documented?.sort(), [...CALL_OUTCOMES].sort(), 'docs/OPERATIONS.md lists every outcome, and no other')
  const pairs = [...metrics.matchAll(/`([a-z_]+)`\s+`([A-Z_]+)`/g)].map(m => [m[1] as string, m[2] as string] as const)
  t.equal(pairs.length, CALL_OUTCOMES.length - 1, 'and says which code each failed outcome is')
  for (const [label, code] of pairs) {
    const entry = isErrorCode(code) ? ERRORS[code] : undefined
    t.equal(entry !== undefined && 'outcome' in entry ? entry.outcome : undefined, label, `${label}: ${code}`)
  }
})

test('the README\'s error section names every code of the table, and no code the table lacks', async (t) => {
  const text = section('README.md', '## Error answers')
  const named = new Set([...text.matchAll(/`([A-Z][A-Z_]+)`/g)].map(m => m[1] as string))
  for (const code of CODES) t.ok(named.has(code), `${code} is in the README's error section`)
  for (const code of named) t.ok(isErrorCode(code), `${code}, in the README, is in the table`)
  for (const code of GATEWAY_OWN) {
    t.match(text, new RegExp(`gateway's own[^]*\`${code}\``), `${code} is described as the gateway's own`)
  }
})

test('the browser client knows every code of the table', async (t) => {
  const source = readFileSync(ROOT + 'client/legacy-gateway.ts', 'utf8')
  const union = /export type ErrorCode =([^]*?)\n\n/.exec(source)?.[1] ?? ''
  const listed = new Set([...union.matchAll(/'([A-Z_]+)'/g)].map(m => m[1] as string))
  for (const code of CODES) t.ok(listed.has(code), `client ErrorCode lists ${code}`)
  const own = ['NETWORK_ERROR', 'HTTP_ERROR', 'BAD_RESPONSE']
  t.strictSame([...listed].filter(c => !own.includes(c)).sort(), [...CODES].sort(), 'and nothing else but its own')
})

// Compile-time: a template with %s takes one detail, one without takes none.
const typed: ErrorCode[] = [
  new errors.TooManySessions(10_000).code,
  new errors.ShuttingDown().code,
  // @ts-expect-error SHUTTING_DOWN's message has no %s
  new errors.ShuttingDown('detail').code,
  // @ts-expect-error SESSION_LOST's message needs its detail
  new errors.SessionLost().code
]
test('class arguments are typed by their template', async (t) => {
  t.equal(typed.length, 4)
})
