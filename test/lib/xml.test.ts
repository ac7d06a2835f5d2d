import t from 'tap'
import type { Test } from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { XmlParseError, jsonToXml, xmlToJson } from '../../lib/xml.js'
import type { XmlJson } from '../../lib/xml.js'
import { DEFAULT_MAX_DEPTH, XmlInputError } from '../../lib/xml-read.js'
import { XmlRpcParseError } from '../../lib/xmlrpc.js'

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/xml/', import.meta.url))

function rejects (t: Test, fn: () => unknown, reason: XmlParseError['reason'], message?: string): void {
  try {
    fn()
  } catch (err) {
    t.ok(err instanceof XmlParseError, `${message ?? reason}: throws XmlParseError (got ${String(err)})`)
    t.equal((err as XmlParseError).reason, reason, `${message ?? reason}: reason`)
    return
  }
  t.fail(`${message ?? reason}: expected an XmlParseError (${reason}), nothing was thrown`)
}

t.test('golden files: xmlToJson matches the expected JSON, and jsonToXml inverts it', async (t) => {
  const names = readdirSync(FIXTURES).filter((f) => f.endsWith('.xml')).map((f) => f.slice(0, -4)).sort()
  t.ok(names.filter((n) => !n.startsWith('error-')).length >= 12, 'enough golden files')
  for (const name of names) {
    const xml = readFileSync(FIXTURES + name + '.xml', 'utf8')
    const expected = JSON.parse(readFileSync(FIXTURES + name + '.json', 'utf8')) as XmlJson
    if (typeof expected.$error === 'string') {
      rejects(t, () => xmlToJson(xml), expected.$error as XmlParseError['reason'], name)
      continue
    }
    t.strictSame(xmlToJson(xml), expected, name)
    t.strictSame(xmlToJson(xml.replace(/\r?\n/g, '\r\n')), expected, `${name} (CRLF)`)
    t.strictSame(xmlToJson(jsonToXml(expected)), expected, `${name}: jsonToXml then xmlToJson is the identity`)
  }
})

t.test('the contract example', async (t) => {
  const alarm = xmlToJson('<alarm><id>42</id><level>critical</level><source>pump-3</source><message>压力过高</message></alarm>')
  t.strictSame(alarm, { alarm: { id: '42', level: 'critical', source: 'pump-3', message: '压力过高' } })
  t.equal(JSON.stringify(alarm), '{"alarm":{"id":"42","level":"critical","source":"pump-3","message":"压力过高"}}', 'document order kept')
})

t.test('values stay strings, exactly', async (t) => {
  t.strictSame(xmlToJson('<a>010</a>'), { a: '010' })
  t.strictSame(xmlToJson('<a>true</a>'), { a: 'true' })
  t.strictSame(xmlToJson('<a>  ok  </a>'), { a: '  ok  ' })
  t.strictSame(xmlToJson('<a>  </a>'), { a: '  ' }, 'whitespace-only text of a leaf is kept')
  t.strictSame(xmlToJson('<a x="007"> 1 </a>'), { a: { '@x': '007', '#text': ' 1 ' } })
  t.strictSame(xmlToJson('<a>\n  <b>1</b>\n</a>'), { a: { b: '1' } }, 'whitespace between children is formatting')
  t.strictSame(xmlToJson('<a x="1">\n  <b>1</b>\n</a>'), { a: { '@x': '1', b: '1' } })
  t.strictSame(xmlToJson('<a><b>1</b></a>'), { a: { b: '1' } }, 'a single element stays single')
  t.strictSame(xmlToJson('<a><b>1</b><b>2</b></a>'), { a: { b: ['1', '2'] } }, 'a repeated one becomes an array')
})

t.test('__proto__ and friends are ordinary own keys', async (t) => {
  const json = xmlToJson('<r __proto__="x"><__proto__><polluted>yes</polluted></__proto__><constructor>c</constructor><toString/></r>')
  const r = json.r as Record<string, unknown>
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched')
  t.equal(Object.getPrototypeOf(r), Object.prototype)
  t.ok(Object.hasOwn(r, '__proto__'), '__proto__ is an own key')
  t.strictSame(Object.getOwnPropertyDescriptor(r, '__proto__')?.value, { polluted: 'yes' })
  t.equal(Object.getOwnPropertyDescriptor(r, 'constructor')?.value, 'c')
  t.equal(Object.getOwnPropertyDescriptor(r, 'toString')?.value, '')
  t.equal(Object.getOwnPropertyDescriptor(r, '@__proto__')?.value, 'x')
  const twice = xmlToJson('<r><constructor>1</constructor><constructor>2</constructor></r>')
  t.strictSame(Object.getOwnPropertyDescriptor(twice.r, 'constructor')?.value, ['1', '2'], 'repeats, not confused with Object.prototype.constructor')
  const once = xmlToJson('<r><toString>1</toString></r>')
  t.equal(Object.getOwnPropertyDescriptor(once.r, 'toString')?.value, '1', 'an inherited name is not taken for a repeat')
})

t.test('hostile, oversized, deep and malformed input', async (t) => {
  rejects(t, () => xmlToJson('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'), 'hostile', 'external entity')
  rejects(t, () => xmlToJson(readFileSync(FIXTURES + 'error-doctype.xml', 'utf8')), 'hostile', 'billion laughs')
  rejects(t, () => xmlToJson('<a>' + 'x'.repeat(200) + '</a>', { maxBytes: 100 }), 'too-large')
  rejects(t, () => xmlToJson('<a>'.repeat(10_000) + '</a>'.repeat(10_000)), 'too-deep', '10,000 levels')
  t.ok(xmlToJson('<a>'.repeat(64) + 'x' + '</a>'.repeat(64)), '64 levels (the default) are fine')
  rejects(t, () => xmlToJson('<a>'.repeat(65) + 'x' + '</a>'.repeat(65)), 'too-deep', '65 are not')
  rejects(t, () => xmlToJson('<a>'.repeat(65) + '</a>'.repeat(65)), 'too-deep', 'nor are 65 with no text')
  t.strictSame(xmlToJson('<a><b><c/></b></a>', { maxDepth: 3 }), { a: { b: { c: '' } } })
  rejects(t, () => xmlToJson('<a><b><c/></b></a>', { maxDepth: 2 }), 'too-deep', 'custom maxDepth')
  rejects(t, () => xmlToJson('<a><b>x</a>'), 'malformed', '<a><b>x</a>')
  rejects(t, () => xmlToJson('<a x="1"><b>x</b'), 'malformed', 'truncated')
  rejects(t, () => xmlToJson(''), 'malformed', 'empty')
  rejects(t, () => xmlToJson('<a x=1/>'), 'malformed', 'unquoted attribute')
  rejects(t, () => xmlToJson('<a x="1" x="2"/>'), 'malformed', 'repeated attribute')
  rejects(t, () => xmlToJson('<a x="&bogus;"/>'), 'malformed', 'undeclared entity in an attribute')
  rejects(t, () => xmlToJson('<a>&#1;</a>'), 'malformed', 'reference to a control character')
  rejects(t, () => xmlToJson('<a><!-- open </a>'), 'malformed', 'unterminated comment')
  rejects(t, () => xmlToJson(42 as unknown as string), 'malformed', 'not a string')
})

t.test('the error type', async (t) => {
  try {
    xmlToJson('<a><b>x</a>')
    t.fail('should throw')
  } catch (err) {
    t.ok(err instanceof XmlParseError)
    t.ok(err instanceof XmlInputError, 'the shared base class')
    t.notOk(err instanceof XmlRpcParseError, 'not the codec error')
    t.equal((err as Error).name, 'XmlParseError')
    t.equal((err as XmlParseError).reason, 'malformed')
  }
})

t.test('jsonToXml', async (t) => {
  t.equal(jsonToXml({ alarm: { id: '42', message: '压力过高' } }),
    '<?xml version="1.0"?><alarm><id>42</id><message>压力过高</message></alarm>')
  t.equal(jsonToXml({ a: { '@x': '1 & "2"', '#text': 'a<b>\r' } }), '<?xml version="1.0"?><a x="1 &amp; &quot;2&quot;">a&lt;b&gt;&#13;</a>')
  t.equal(jsonToXml({ a: { b: ['1', '', { '@k': 'v' }] } }), '<?xml version="1.0"?><a><b>1</b><b/><b k="v"/></a>')
  t.equal(jsonToXml({ a: { n: 5, t: true, z: null, u: undefined } }), '<?xml version="1.0"?><a><n>5</n><t>true</t><z/></a>', 'liberal with scalars')
  t.equal(jsonToXml({ a: { '@tab': 'x\ty\nz' } }), '<?xml version="1.0"?><a tab="x&#9;y&#10;z"/>', 'attribute whitespace survives normalisation')
  t.equal(jsonToXml({ 'ns:a': { '@xmlns:ns': 'urn:x' } }), '<?xml version="1.0"?><ns:a xmlns:ns="urn:x"/>')
  t.equal(jsonToXml({ a: '' }, { encoding: 'GBK' }), '<?xml version="1.0" encoding="GBK"?><a/>')
  for (const bad of [{}, { a: 1, b: 2 }, null, 'x', 1, [], [{ a: 1 }], { a: ['1', '2'] }]) {
    t.throws(() => jsonToXml(bad), TypeError, `refuses ${JSON.stringify(bad)}`)
  }
  for (const name of ['1a', 'a b', '', '#text', '@x', 'a>', '-a', 'a/b']) {
    t.throws(() => jsonToXml({ [name]: 'x' }), TypeError, `refuses the root name ${JSON.stringify(name)}`)
    if (!/^[@#]/.test(name)) t.throws(() => jsonToXml({ r: { [name]: 'x' } }), TypeError, `refuses the child name ${JSON.stringify(name)}`)
  }
  t.throws(() => jsonToXml({ r: { '@1x': 'v' } }), TypeError, 'invalid attribute name')
  t.throws(() => jsonToXml({ r: { '@x': { y: 1 } } }), TypeError, 'object attribute value')
  t.throws(() => jsonToXml({ r: { a: [['nested']] } }), TypeError, 'array in array')
  t.throws(() => jsonToXml({ r: '\u0000' }), TypeError, 'a character XML cannot carry')
  for (const n of [Infinity, -Infinity, NaN]) {
    t.throws(() => jsonToXml({ r: n }), { name: 'TypeError', message: /not a finite number/ }, `refuses ${n} as text`)
    t.throws(() => jsonToXml({ r: { '@n': n } }), TypeError, `refuses ${n} as an attribute`)
    t.throws(() => jsonToXml({ r: { '#text': n, c: '1' } }), TypeError, `refuses ${n} as #text`)
  }
  const cyclic: Record<string, unknown> = {}
  cyclic.self = cyclic
  t.throws(() => jsonToXml({ r: cyclic }), TypeError, 'a cycle')
})

t.test('jsonToXml refuses exactly what xmlToJson would refuse back', async (t) => {
  // `levels` elements from the root to the innermost one, whose content is `leaf`.
  const nest = (levels: number, leaf: unknown = 'x'): XmlJson => {
    let value = leaf
    for (let i = 1; i < levels; i++) value = { [i % 2 === 0 ? 'a' : 'b']: value }
    return { root: value } as XmlJson
  }
  for (const [leaf, what] of [['x', 'text'], [null, 'an empty element'], [['1', '2'], 'a repeated element'], [{ '@k': 'v', '#text': 't' }, 'attributes and text']] as const) {
    const deepest = nest(DEFAULT_MAX_DEPTH, leaf)
    const xml = jsonToXml(deepest)
    t.strictSame(xmlToJson(xml), nest(DEFAULT_MAX_DEPTH, leaf === null ? '' : leaf), `${DEFAULT_MAX_DEPTH} element levels, ${what}: comes back`)
    t.throws(() => jsonToXml(nest(DEFAULT_MAX_DEPTH + 1, leaf)), { name: 'TypeError', message: /deeper than 64 levels/ }, `one more, ${what}: refused`)
  }
})

function canonical (value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v
    const sorted: Record<string, unknown> = {}
    for (const key of Object.keys(v).sort()) {
      Object.defineProperty(sorted, key, { value: (v as Record<string, unknown>)[key], enumerable: true })
    }
    return sorted
  })
}

t.test('round trip of mapping-shaped JSON', async (t) => {
  const samples: XmlJson[] = [
    { a: '' },
    { a: '  spaced  ' },
    { a: '<&>"\'\r\n\t]]>' },
    { a: { '@x': '\t\n\r <&>"\' ', '#text': 'text' } },
    { a: { b: ['1', '2', { c: 'x', '@d': 'y' }], e: { f: { g: '压力过高 😀' } } } },
    { a: { '@only': 'attribute' } },
    JSON.parse('{"r":{"__proto__":{"polluted":"yes"},"constructor":["1","2"],"@prototype":"p"}}') as XmlJson,
    { 'x:root': { 'x:child': '010', '@xmlns:x': 'urn:x' } }
  ]
  for (const sample of samples) {
    // canonical JSON rather than strictSame: tcompare takes an own "constructor" key for the class
    t.equal(canonical(xmlToJson(jsonToXml(sample))), canonical(sample), JSON.stringify(sample))
  }
  t.equal(({} as Record<string, unknown>).polluted, undefined)
})
