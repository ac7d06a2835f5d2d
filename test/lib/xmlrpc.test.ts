import t from 'tap'
import type { Test } from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { XmlRpcParseError, decodeCall, decodeResponse, encodeCall, encodeFault, encodeResponse } from '../../lib/xmlrpc.js'
import type { JsonValue, MethodResponse } from '../../lib/xmlrpc.js'
import { decodeResponseTree } from '../../lib/xmlrpc-decode.js'
import { DEFAULT_MAX_DEPTH, XmlInputError } from '../../lib/xml-read.js'
import { Random } from '../chaos/random.js'

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/xmlrpc/', import.meta.url))

function rejects (t: Test, fn: () => unknown, reason: XmlRpcParseError['reason'], message?: string): void {
  try {
    fn()
  } catch (err) {
    t.ok(err instanceof XmlRpcParseError, `${message ?? reason}: throws XmlRpcParseError (got ${String(err)})`)
    t.equal((err as XmlRpcParseError).reason, reason, `${message ?? reason}: reason`)
    return
  }
  t.fail(`${message ?? reason}: expected an XmlRpcParseError (${reason}), nothing was thrown`)
}

function decodeAny (xml: string): MethodResponse | { method: string, params: JsonValue[] } {
  return xml.includes('<methodCall') ? decodeCall(xml) : decodeResponse(xml)
}

const response = (value: string): string =>
  `<?xml version="1.0"?><methodResponse><params><param><value>${value}</value></param></params></methodResponse>`

t.test('golden files: decoding matches the expected JSON, LF or CRLF', async (t) => {
  const names = readdirSync(FIXTURES).filter((f) => f.endsWith('.xml')).map((f) => f.slice(0, -4)).sort()
  t.ok(names.filter((n) => !n.startsWith('error-')).length >= 25, 'at least 25 decoding golden files')
  for (const name of names) {
    const xml = readFileSync(FIXTURES + name + '.xml', 'utf8')
    const expected = JSON.parse(readFileSync(FIXTURES + name + '.json', 'utf8')) as Record<string, unknown>
    if (typeof expected.$error === 'string') {
      rejects(t, () => decodeAny(xml), expected.$error as XmlRpcParseError['reason'], name)
      continue
    }
    t.strictSame(decodeAny(xml), expected, name)
    // line ends between elements are insignificant, and CRLF inside text is read as LF (XML §2.11)
    t.strictSame(decodeAny(xml.replace(/\r?\n/g, '\r\n')), expected, `${name} (CRLF)`)
    t.strictSame(decodeAny(xml.replace(/\r\n/g, '\n')), expected, `${name} (LF)`)
  }
})

t.test('the CRLF golden file really has CRLF line ends', async (t) => {
  t.match(readFileSync(FIXTURES + 'python-crlf-pretty.xml', 'utf8'), /<member>\r\n<name>/)
})

t.test('strings come back exactly as sent', async (t) => {
  t.strictSame(decodeResponse(response('007')), { fault: false, value: '007' })
  t.strictSame(decodeResponse(response('  a  ')), { fault: false, value: '  a  ' })
  t.strictSame(decodeResponse(response('<string> 42 </string>')), { fault: false, value: ' 42 ' })
  t.strictSame(decodeResponse(response('\n  <string>x</string>\n')), { fault: false, value: 'x' }, 'blank text beside a type is formatting')
  t.strictSame(decodeResponse(response('\n  \n')), { fault: false, value: '\n  \n' }, 'blank untyped value is data')
  t.strictSame(decodeResponse(response('<string>a&#13;b\r\nc</string>')), { fault: false, value: 'a\rb\nc' })
})

t.test('typed decodeCall keeps dateTime and base64 typed', async (t) => {
  const xml = '<methodCall><methodName>echo</methodName><params>' +
    '<param><value><dateTime.iso8601>20240501T08:30:00</dateTime.iso8601></value></param>' +
    '<param><value><base64>AAEC\r\n  AwQ=</base64></value></param>' +
    '<param><value><array><data><value><dateTime.iso8601>2024-05-01T08:30:00Z</dateTime.iso8601></value></data></array></value></param>' +
    '</params></methodCall>'
  t.strictSame(decodeCall(xml, { typed: true }), {
    method: 'echo',
    params: [{ $dateTime: '20240501T08:30:00' }, { $base64: 'AAECAwQ=' }, [{ $dateTime: '2024-05-01T08:30:00Z' }]]
  })
  t.strictSame(decodeCall(xml), { method: 'echo', params: ['20240501T08:30:00', 'AAECAwQ=', ['2024-05-01T08:30:00Z']] })
  t.strictSame(decodeCall(xml, { typed: false }).params[0], '20240501T08:30:00')
})

t.test('encodeCall writes the spec example exactly', async (t) => {
  t.equal(encodeCall('examples.getStateName', [41]),
    '<?xml version="1.0"?><methodCall><methodName>examples.getStateName</methodName>' +
    '<params><param><value><int>41</int></value></param></params></methodCall>')
  t.equal(encodeCall('system.listMethods', []),
    '<?xml version="1.0"?><methodCall><methodName>system.listMethods</methodName><params></params></methodCall>')
  t.equal(encodeResponse('South Dakota'),
    '<?xml version="1.0"?><methodResponse><params><param><value><string>South Dakota</string></value></param></params></methodResponse>')
  t.equal(encodeFault(4, 'Too many parameters.'),
    '<?xml version="1.0"?><methodResponse><fault><value><struct>' +
    '<member><name>faultCode</name><value><int>4</int></value></member>' +
    '<member><name>faultString</name><value><string>Too many parameters.</string></value></member>' +
    '</struct></value></fault></methodResponse>')
})

t.test('opts.encoding only changes the declaration', async (t) => {
  t.ok(encodeCall('m', ['压力'], { encoding: 'GBK' }).startsWith('<?xml version="1.0" encoding="GBK"?><methodCall>'))
  t.ok(encodeResponse(1, { encoding: 'big5' }).startsWith('<?xml version="1.0" encoding="big5"?><methodResponse>'))
  t.ok(encodeFault(1, 'x', { encoding: 'gb18030' }).startsWith('<?xml version="1.0" encoding="gb18030"?>'))
  t.match(encodeCall('m', ['压力'], { encoding: 'GBK' }), /<string>压力<\/string>/, 'text is not transcoded here')
  t.throws(() => encodeCall('m', [], { encoding: 'x"?><evil' }), TypeError)
})

t.test('numbers map to int, i8 or double', async (t) => {
  const encoded = (n: number): string => encodeResponse(n).replace(/^.*<param><value>|<\/value><\/param>.*$/g, '')
  t.equal(encoded(0), '<int>0</int>')
  t.equal(encoded(-0), '<int>0</int>')
  t.equal(encoded(2147483647), '<int>2147483647</int>')
  t.equal(encoded(-2147483648), '<int>-2147483648</int>')
  t.equal(encoded(2147483648), '<i8>2147483648</i8>')
  t.equal(encoded(-2147483649), '<i8>-2147483649</i8>')
  t.equal(encoded(Number.MAX_SAFE_INTEGER), '<i8>9007199254740991</i8>')
  t.equal(encoded(2 ** 53), '<double>9007199254740992</double>')
  t.equal(encoded(1.5), '<double>1.5</double>')
  t.equal(encoded(-0.1), '<double>-0.1</double>')
  t.equal(encoded(1e21), '<double>1000000000000000000000</double>', 'no exponent: the spec allows decimal point notation only')
  t.equal(encoded(1.5e-7), '<double>0.00000015</double>')
  t.equal(encoded(-1.2345e25), '<double>-12345000000000000000000000</double>')
  const decoded = (text: string): unknown => (decodeResponse(response(text)) as { value: unknown }).value
  t.ok(Object.is(decoded('<i4>-0</i4>'), 0), '<i4>-0</i4> decodes to 0, not -0')
  t.ok(Object.is(decoded('<double>-0.0</double>'), 0), '<double>-0.0</double> decodes to 0, not -0')
  for (const n of [NaN, Infinity, -Infinity]) {
    t.throws(() => encodeResponse(n), TypeError, `${n} is refused`)
    t.throws(() => encodeCall('m', [[n]]), TypeError, `${n} in an array is refused`)
  }
})

t.test('escaping and characters XML cannot carry', async (t) => {
  t.match(encodeResponse('<&>"\'\r\n\t'), '<string>&lt;&amp;&gt;&quot;\'&#13;\n\t</string>')
  t.match(encodeResponse({ 'a<b&c': 1 }), '<name>a&lt;b&amp;c</name>')
  t.match(encodeCall('a&b', []), '<methodName>a&amp;b</methodName>')
  t.match(encodeResponse('😀 压力过高'), '<string>😀 压力过高</string>', 'surrogate pairs and CJK are written as they are')
  for (const [bad, what] of [
    ['\u0000', 'NUL'], ['a\u0001b', 'U+0001'], ['\u0008', 'U+0008'], ['\u000B', 'U+000B'], ['\u001F', 'U+001F'],
    ['\uFFFE', 'U+FFFE'], ['\uFFFF', 'U+FFFF'], ['\uD800', 'lone high surrogate'], ['x\uDC00', 'lone low surrogate'],
    ['\uD83Dx', 'high surrogate followed by a letter']
  ] as const) {
    t.throws(() => encodeResponse(bad), { name: 'TypeError', message: /U\+[0-9A-F]{4}/ }, `${what} is refused with its code point named`)
    t.throws(() => encodeCall('m', [{ [bad]: 1 }]), TypeError, `${what} in a member name is refused`)
  }
  t.throws(() => encodeCall('m\u0000', []), TypeError, 'in a method name too')
  t.throws(() => encodeFault(1, '\u0007'), TypeError, 'in a fault string too')
})

t.test('undefined, dateTime/base64 objects, JSON-like conversions', async (t) => {
  const body = (v: unknown): string => encodeResponse(v).replace(/^.*<param>|<\/param>.*$/g, '')
  t.equal(body([undefined, null]), '<value><array><data><value><nil/></value><value><nil/></value></data></array></value>')
  t.equal(body({ a: undefined, b: 1, f: () => 1 }), '<value><struct><member><name>b</name><value><int>1</int></value></member></struct></value>')
  t.equal(body({ $dateTime: '19980717T14:08:55' }), '<value><dateTime.iso8601>19980717T14:08:55</dateTime.iso8601></value>')
  t.equal(body({ $base64: 'eW91' }), '<value><base64>eW91</base64></value>')
  t.match(body({ $dateTime: '19980717T14:08:55', x: 1 }), /^<value><struct><member><name>\$dateTime<\/name>/, 'two keys: a struct')
  t.match(body({ $base64: 5 }), /^<value><struct>/, 'non-string: a struct')
  t.equal(body(true), '<value><boolean>1</boolean></value>')
  t.equal(body(false), '<value><boolean>0</boolean></value>')
  t.equal(body(12n), '<value><i8>12</i8></value>')
  t.equal(body(new Date(Date.UTC(2024, 0, 2, 3, 4, 5))), '<value><string>2024-01-02T03:04:05.000Z</string></value>', 'toJSON, as JSON.stringify')
  t.throws(() => encodeResponse(2n ** 64n), TypeError)
  const cyclic: Record<string, unknown> = {}
  cyclic.self = cyclic
  t.throws(() => encodeResponse(cyclic), TypeError, 'a cycle is a TypeError, not a stack overflow')
  t.throws(() => encodeCall('', []), TypeError)
  t.throws(() => encodeCall('m', 'not an array' as unknown as unknown[]), TypeError)
  t.throws(() => encodeFault(1.5, 'x'), TypeError)
})

// Values a gateway user may send; JSON.parse so that "__proto__" is an own key, as it is in a request body.
const TRICKY: JsonValue[] = JSON.parse(JSON.stringify([
  0, 1, -1, 2147483647, -2147483648, 2147483648, -2147483649, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER,
  2 ** 60, -(2 ** 70), 1e21, 1e300, -1e-300, 5e-324, 1.7976931348623157e308, 0.1, 1 / 3, -12.214,
  true, false, null,
  '', ' ', '007', '  a  ', '1e3', 'true', 'null', '<&>"\'', ']]>', '&amp;', '\r', '\r\n', 'a\rb', '\n\t x \t\n',
  '压力过高', '壓力過高', '😀', '\u{10FFFF}', '\uFFFD', 'x'.repeat(100_000),
  [], [[]], [1], [[1]], [null], ['', ''], {}, { '': '' }, { ' a ': ' b ' }, { 'a<&>': [{}] },
  { nested: { deeper: [{ deepest: ['x', 1, 1.5, false, null, {}] }] } }
])).concat([JSON.parse('{"__proto__":{"polluted":"yes"},"constructor":"c","prototype":"p","toString":"t","hasOwnProperty":"h"}')])

t.test('round trip JSON → XML-RPC → JSON is the identity', async (t) => {
  for (const value of TRICKY) {
    const label = JSON.stringify(value).slice(0, 60)
    t.strictSame(decodeResponse(encodeResponse(value)), { fault: false, value }, `response ${label}`)
  }
  const call = decodeCall(encodeCall('sample.echo', TRICKY))
  t.equal(call.method, 'sample.echo')
  t.strictSame(call.params, TRICKY, 'call with every value as a param')
  t.strictSame(decodeCall(encodeCall('m', [])), { method: 'm', params: [] })
  const typed = [{ $dateTime: '20240501T08:30:00' }, { $base64: 'AAECAwQ=' }, [{ $dateTime: '2024-05-01T08:30:00+08:00' }]]
  t.strictSame(decodeCall(encodeCall('m', typed), { typed: true }).params, typed, 'typed values survive with typed: true')
  const fault = decodeResponse(encodeFault(-32601, '  method <x> not found\r\n'))
  t.strictSame(fault, { fault: true, faultCode: -32601, faultString: '  method <x> not found\r\n' })
  t.strictSame(decodeResponse(encodeFault(2 ** 40, '')), { fault: true, faultCode: 2 ** 40, faultString: '' })
})

t.test('__proto__ and friends are ordinary own keys', async (t) => {
  const decoded = decodeResponse(readFileSync(FIXTURES + 'proto-members.xml', 'utf8'))
  if (decoded.fault) return t.fail('unexpected fault')
  const value = decoded.value as Record<string, JsonValue>
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched')
  t.equal(Object.getPrototypeOf(value), Object.prototype, 'the struct keeps its ordinary prototype')
  t.ok(Object.hasOwn(value, '__proto__'), '__proto__ is an own key')
  t.strictSame(Object.getOwnPropertyDescriptor(value, '__proto__')?.value, { polluted: 'yes' })
  t.equal((value as { polluted?: unknown }).polluted, undefined, 'not reachable through the prototype chain')
  const own = (key: string): unknown => Object.getOwnPropertyDescriptor(value, key)?.value
  t.equal(own('constructor'), 'c', 'constructor is an own string')
  t.equal(own('prototype'), 'p', 'prototype is an own string')
  t.same(Object.keys(value), ['__proto__', 'constructor', 'prototype', 'toString'], 'member order kept')
  t.equal(JSON.stringify(value), '{"__proto__":{"polluted":"yes"},"constructor":"c","prototype":"p","toString":"t"}')
  const call = decodeCall(encodeCall('m', [JSON.parse('{"__proto__":{"isAdmin":true}}')]))
  t.equal(({} as Record<string, unknown>).isAdmin, undefined)
  t.ok(Object.hasOwn(call.params[0] as object, '__proto__'))
})

const BILLION_LAUGHS = `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<methodResponse><params><param><value><string>&lol9;</string></value></param></params></methodResponse>`

t.test('hostile input is refused', async (t) => {
  rejects(t, () => decodeResponse(BILLION_LAUGHS), 'hostile', 'billion laughs')
  rejects(t, () => decodeCall('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><methodCall><methodName>&e;</methodName></methodCall>'),
    'hostile', 'external entity')
  rejects(t, () => decodeResponse('<!doctype methodResponse><methodResponse><params/></methodResponse>'), 'hostile', 'lower-case doctype')
  rejects(t, () => decodeResponse('<methodResponse><params/></methodResponse><!ENTITY x "y">'), 'hostile', 'ENTITY anywhere')
  rejects(t, () => decodeResponse('<methodResponse><params/><!-- <!DOCTYPE x> --></methodResponse>'), 'hostile', 'even inside a comment')
})

t.test('nesting is bounded before it can reach the stack', async (t) => {
  const arrays = (n: number): string =>
    response('<array><data><value>'.repeat(n) + 'x' + '</value></data></array>'.repeat(n))
  const structs = (n: number): string =>
    response('<struct><member><name>a</name><value>'.repeat(n) + 'x' + '</value></member></struct>'.repeat(n))
  rejects(t, () => decodeResponse(arrays(10_000)), 'too-deep', 'arrays 10,000 deep')
  rejects(t, () => decodeResponse(structs(10_000)), 'too-deep', 'structs 10,000 deep')
  rejects(t, () => decodeResponse(response('<value>'.repeat(10_000) + '</value>'.repeat(10_000))), 'too-deep', 'plain elements 10,000 deep')
  rejects(t, () => decodeCall(arrays(100_000).replace('methodResponse><params>', 'methodCall><methodName>m</methodName><params>')
    .replace('</params></methodResponse>', '</params></methodCall>')), 'too-deep', 'a call 100,000 deep')
  const ok = decodeResponse(arrays(64))
  t.equal(JSON.stringify(ok).split('[').length - 1, 64, '64 levels (the default) are fine')
  rejects(t, () => decodeResponse(arrays(65)), 'too-deep', '65 levels are not')
  rejects(t, () => decodeResponse(structs(65)), 'too-deep', '65 struct levels are not')
  t.strictSame(decodeResponse(arrays(2), { maxDepth: 2 }), { fault: false, value: [['x']] })
  rejects(t, () => decodeResponse(arrays(3), { maxDepth: 2 }), 'too-deep', 'custom maxDepth')
  t.strictSame(decodeResponse(response('7'), { maxDepth: 0 }), { fault: false, value: '7' }, 'maxDepth 0 still allows scalars')
  rejects(t, () => decodeResponse(response('<array><data/></array>'), { maxDepth: 0 }), 'too-deep')
})

t.test('the encoders refuse exactly what the decoders would refuse back', async (t) => {
  // Levels alternate struct and array, with a string at the bottom: the deepest element chain a
  // level count allows (<string> inside the innermost <value>).
  const nest = (levels: number): JsonValue => {
    let value: JsonValue = 'x'
    for (let i = 0; i < levels; i++) value = i % 2 === 0 ? { a: value } : [value]
    return value
  }
  const deepest = nest(DEFAULT_MAX_DEPTH)
  t.match(encodeResponse(deepest), /<value><string>x<\/string><\/value>/)
  t.strictSame(decodeResponse(encodeResponse(deepest)), { fault: false, value: deepest }, `a response value of ${DEFAULT_MAX_DEPTH} levels comes back`)
  t.strictSame(decodeResponseTree(encodeResponse(deepest)), { fault: false, value: deepest }, '(the tree path too)')
  t.throws(() => encodeResponse(nest(DEFAULT_MAX_DEPTH + 1)), { name: 'TypeError', message: /deeper than 64 levels/ }, 'one level more is refused')
  t.throws(() => encodeResponse([nest(DEFAULT_MAX_DEPTH)]), TypeError, 'in an array too')

  // A call's params list is a level: what an echo answers must decode.
  const params = [1, nest(DEFAULT_MAX_DEPTH - 1)]
  const call = decodeCall(encodeCall('echo', params))
  t.strictSame(call, { method: 'echo', params }, `params of ${DEFAULT_MAX_DEPTH - 1} levels in the list: the call decodes`)
  t.strictSame(decodeResponse(encodeResponse(call.params)), { fault: false, value: params }, 'and so does an echo of them')
  t.throws(() => encodeCall('echo', [nest(DEFAULT_MAX_DEPTH)]), { name: 'TypeError', message: /params list counting as one/ }, 'a param one level deeper is refused')
  t.throws(() => encodeCall('echo', [1, [nest(DEFAULT_MAX_DEPTH - 1)]]), TypeError, 'anywhere in the list')
  t.doesNotThrow(() => encodeCall('echo', [{ $dateTime: '19980717T14:08:55' }, nest(DEFAULT_MAX_DEPTH - 2)]), 'dateTime and base64 objects are scalars, not levels')
  t.strictSame(decodeResponse(encodeResponse(nest(DEFAULT_MAX_DEPTH - 1))).fault, false)
})

t.test('size is bounded before parsing', async (t) => {
  const doc = response('<string>' + 'x'.repeat(1000) + '</string>')
  rejects(t, () => decodeResponse(doc, { maxBytes: 500 }), 'too-large', 'custom maxBytes')
  t.equal((decodeResponse(doc, { maxBytes: doc.length }) as { value: string }).value.length, 1000, 'exactly maxBytes is fine')
  const huge = response('<string>' + 'x'.repeat(10 * 1024 * 1024) + '</string>')
  rejects(t, () => decodeResponse(huge), 'too-large', 'default limit is 10 MiB')
  rejects(t, () => decodeCall(huge), 'too-large', 'for calls too')
})

t.test('malformed and foreign documents', async (t) => {
  rejects(t, () => decodeResponse('<a><b>x</a>'), 'malformed', '<a><b>x</a>')
  rejects(t, () => decodeResponse(encodeResponse({ a: [1, 2] }).slice(0, -20)), 'malformed', 'truncated')
  rejects(t, () => decodeResponse('<methodResponse><params/></methodResponse>junk'), 'malformed', 'trailing junk')
  rejects(t, () => decodeResponse('<methodResponse/><methodResponse/>'), 'malformed', 'two roots')
  rejects(t, () => decodeResponse('<methodResponse/>'), 'malformed', 'empty methodResponse')
  rejects(t, () => decodeResponse('<methodResponse><params/><fault/></methodResponse>'), 'malformed', 'params and fault')
  rejects(t, () => decodeResponse('<methodResponse><fault><value><int>1</int></value></fault></methodResponse>'), 'malformed', 'fault without struct')
  rejects(t, () => decodeResponse(response('<array><value>1</value></array>')), 'malformed', 'array without data')
  rejects(t, () => decodeResponse(response('<struct><member><value>1</value></member></struct>')), 'malformed', 'member without name')
  rejects(t, () => decodeResponse(response('<struct><member><name>a</name></member></struct>')), 'malformed', 'member without value')
  rejects(t, () => decodeResponse(response('<string><b>x</b></string>')), 'malformed', 'element inside string')
  rejects(t, () => decodeResponse(response('<int></int>')), 'malformed', 'empty int')
  rejects(t, () => decodeResponse(response('<double>1e999</double>')), 'malformed', 'double out of range')
  rejects(t, () => decodeResponse(response('<string>&#0;</string>')), 'malformed', 'reference to NUL')
  rejects(t, () => decodeResponse(response('<string>&#xD800;</string>')), 'malformed', 'reference to a surrogate')
  rejects(t, () => decodeResponse(response('<string>&#x110000;</string>')), 'malformed', 'reference beyond Unicode')
  rejects(t, () => decodeResponse(response('<string>a & b</string>')), 'malformed', 'bare ampersand')
  rejects(t, () => decodeResponse(response('<string><!ELEMENT x ANY></string>')), 'malformed', 'stray declaration')
  rejects(t, () => decodeResponse('<methodCall><methodName>m</methodName></methodCall>'), 'not-xmlrpc', 'a call where a response is expected')
  rejects(t, () => decodeCall(encodeResponse(1)), 'not-xmlrpc', 'a response where a call is expected')
  rejects(t, () => decodeCall('<methodCall><params/></methodCall>'), 'malformed', 'call without methodName')
  rejects(t, () => decodeResponse('<?xml version="1.0"?><rss><channel/></rss>'), 'not-xmlrpc', 'other XML')
  rejects(t, () => decodeResponse(Buffer.from(encodeResponse(1)) as unknown as string), 'malformed', 'not a string')
  rejects(t, () => decodeResponse(undefined as unknown as string), 'malformed', 'undefined')
  t.strictSame(decodeResponse('\uFEFF' + encodeResponse(1)), { fault: false, value: 1 }, 'a BOM left in the string is ignored')
})

t.test('element names hold no whitespace to trim: the parser ends a name at the first whitespace', async (t) => {
  // U+FEFF and U+1680 are both XML name characters and JavaScript whitespace: the ways to put
  // whitespace in a tag name the validator accepts. The names the walk sees are cut before it.
  const value = (inner: string): string => `<methodResponse><params><param><value>${inner}</value></param></params></methodResponse>`
  t.strictSame(decodeResponseTree('<methodResponse\uFEFF><params\uFEFF><param><value><i4\uFEFF>1</i4\uFEFF></value></param></params></methodResponse>'), { fault: false, value: 1 })
  t.throws(() => decodeResponseTree(value('<foo\uFEFF>1</foo\uFEFF>')), { message: 'unknown XML-RPC type <foo>' })
  t.throws(() => decodeResponseTree(value('<foo\u1680>1</foo\u1680>')), { message: 'unknown XML-RPC type <foo>' })
  t.throws(() => decodeResponseTree(value('<i4>1</i4><x\uFEFF/>')), { message: '<value> holds both <i4> and <x>' })
  t.throws(() => decodeResponseTree('<methodResponse><params><param><value><i4>1</i4></value><x\uFEFF/></param></params></methodResponse>'), { message: 'unexpected <x> in <param>, expected <value>' })
  t.throws(() => decodeResponseTree('<x\uFEFF/>'), { message: "the document's root element is <x>, expected <methodResponse>" })
})

t.test('the error type', async (t) => {
  try {
    decodeResponse('<nope')
    t.fail('should throw')
  } catch (err) {
    t.ok(err instanceof XmlRpcParseError)
    t.ok(err instanceof XmlInputError, 'shares a base class with XmlParseError')
    t.ok(err instanceof Error)
    t.equal((err as Error).name, 'XmlRpcParseError')
    t.equal((err as XmlRpcParseError).reason, 'malformed')
    t.match((err as Error).message, /not well-formed/)
  }
})

t.test('fuzz: truncated or mutated documents decode or throw XmlRpcParseError, nothing else', async (t) => {
  const seeds = [
    encodeResponse({ a: [1, 2.5, 'x<y', null, true, { b: { $dateTime: '20240101T00:00:00' } }], c: { $base64: 'AAAA' }, d: '压力😀' }),
    encodeFault(-1, 'boom & bust'),
    encodeCall('m.n', [1, 'two', [3], { four: 4 }]),
    readFileSync(FIXTURES + 'python-crlf-pretty.xml', 'utf8')
  ]
  const pieces = ['<', '>', '/', '&', ';', '"', '\'', '=', '!', '[', ']', '-', '?', 'x', '0', ' ', '\n', '<value>', '</value>',
    '<array>', '<data>', '<struct>', '<member>', '<name>', '&#', '&lt;', '<![CDATA[', ']]>', '<!--', '-->', '<?', '?>', '\uD800', '\u0000']
  const rng = new Random(42)
  const random = (): number => rng.next()
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T
  let decoded = 0
  let refused = 0
  for (let i = 0; i < 3000; i++) {
    let doc = pick(seeds)
    const edits = 1 + Math.floor(random() * 3)
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(random() * (doc.length + 1))
      switch (Math.floor(random() * 4)) {
        case 0: doc = doc.slice(0, at); break
        case 1: doc = doc.slice(0, at) + pick(pieces) + doc.slice(at); break
        case 2: doc = doc.slice(0, at) + doc.slice(at + 1 + Math.floor(random() * 8)); break
        default: doc = doc.slice(0, at) + pick(pieces) + doc.slice(at + 1)
      }
    }
    try {
      if (doc.includes('<methodCall')) decodeCall(doc, { typed: random() < 0.5 })
      else decodeResponse(doc)
      decoded++
    } catch (err) {
      if (!(err instanceof XmlRpcParseError)) {
        t.fail(`threw ${String(err)} for ${JSON.stringify(doc)}`)
        return
      }
      refused++
    }
  }
  t.ok(refused > 100, `${refused} mutations refused`)
  t.ok(decoded > 10, `${decoded} mutations still decoded`)
})
