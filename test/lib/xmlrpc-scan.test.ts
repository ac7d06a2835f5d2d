// decodeResponse's fast path (scanResponse) against the tree path (decodeResponseTree): whenever the
// scanner returns a value, it must be exactly what the tree path returns; whenever the tree path
// refuses a document, the scanner must step aside (return undefined) so the refusal is the same.
import t from 'tap'
import type { Test } from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { XmlRpcParseError, decodeResponse, encodeFault, encodeResponse } from '../../lib/xmlrpc.js'
import type { JsonValue, MethodResponse } from '../../lib/xmlrpc.js'
import { decodeResponseTree } from '../../lib/xmlrpc-decode.js'
import { scanResponse } from '../../lib/xmlrpc-scan.js'
import { Random } from '../chaos/random.js'

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/xmlrpc/', import.meta.url))
const MAX_DEPTH = 64
// XMLRPC_FUZZ_N=200000 (and XMLRPC_FUZZ_SEED=…) for a deeper run; 6,000 mutations of seed 4242 in npm test
const FUZZ_N = Number(process.env.XMLRPC_FUZZ_N ?? 6000)
const FUZZ_SEED = Number(process.env.XMLRPC_FUZZ_SEED ?? 4242)

type Outcome = { ok: true, value: MethodResponse } | { ok: false, reason: string }

function tree (xml: string, maxDepth = MAX_DEPTH): Outcome {
  try {
    return { ok: true, value: decodeResponseTree(xml, { maxDepth }) }
  } catch (err) {
    if (!(err instanceof XmlRpcParseError)) throw err
    return { ok: false, reason: err.reason }
  }
}

function tryDecode (xml: string, maxDepth = MAX_DEPTH): string {
  try {
    return JSON.stringify(decodeResponse(xml, { maxDepth }))
  } catch (err) {
    return `${(err as Error).name} ${(err as XmlRpcParseError).reason}`
  }
}

/** Checks the two paths agree on `xml`; returns whether the scanner took it. */
function agree (t: Test, xml: string, what: string, maxDepth = MAX_DEPTH): boolean {
  const scanned = scanResponse(xml, maxDepth)
  if (scanned === undefined) return false
  const reference = tree(xml, maxDepth)
  if (!reference.ok) {
    t.fail(`${what}: the scanner decoded a document the tree path refuses (${reference.reason}): ${JSON.stringify(xml)}`)
    return true
  }
  // strictSame alone passes -0 for 0 and misses key order: compare the JSON text as well.
  if (JSON.stringify(scanned) !== JSON.stringify(reference.value)) {
    t.fail(`${what}: ${JSON.stringify(scanned)} vs tree ${JSON.stringify(reference.value)} for ${JSON.stringify(xml)}`)
  }
  return true
}

t.test('golden files: the scanner agrees with the tree path, and takes the common ones', async (t) => {
  const names = readdirSync(FIXTURES).filter((f) => f.endsWith('.xml')).map((f) => f.slice(0, -4)).sort()
  const taken: string[] = []
  for (const name of names) {
    const xml = readFileSync(FIXTURES + name + '.xml', 'utf8')
    if (!xml.includes('<methodResponse')) continue
    for (const [variant, doc] of [['', xml], [' (LF)', xml.replace(/\r\n/g, '\n')], [' (CRLF)', xml.replace(/\r?\n/g, '\r\n')]] as const) {
      if (agree(t, doc, name + variant) && variant !== '') taken.push(name + variant)
    }
  }
  // These are the shapes real servers send; if the scanner stops taking them the gateway slows down.
  for (const name of ['spec-response-getStateName', 'spec-fault', 'spec-struct', 'spec-array', 'spec-scalars', 'nested',
    'emoji-chinese', 'untyped-007', 'empty-strings', 'one-element-array', 'nil-response',
    'fault-i4-code', 'params-empty', 'leading-trailing-spaces', 'whitespace-between-vs-inside', 'python-crlf-pretty',
    'apache-untyped-extensions']) {
    t.ok(taken.includes(name + ' (LF)'), `the scanner takes ${name}`)
    t.ok(taken.includes(name + ' (CRLF)'), `the scanner takes ${name} with CRLF line ends`)
  }
})

t.test('what the scanner leaves to the tree path', async (t) => {
  const wrap = (value: string): string => `<?xml version="1.0"?><methodResponse><params><param><value>${value}</value></param></params></methodResponse>`
  const cases: Record<string, string> = {
    comment: wrap('<!-- c --><string>x</string>'),
    cdata: wrap('<string><![CDATA[<x>]]></string>'),
    attribute: wrap('<string lang="en">x</string>'),
    'odd prefix': wrap('<1x:nil/>'),
    'two prefixes': wrap('<a:b:nil/>'),
    'prefixed close mismatch': wrap('<ex:struct></struct>'),
    'repeated xmlns': '<methodResponse xmlns:ex="a" xmlns:ex="a"><params/></methodResponse>',
    'other root attribute': '<methodResponse id="1"><params/></methodResponse>',
    'entity in xmlns': '<methodResponse xmlns:ex="a&amp;b"><params/></methodResponse>',
    'no space before xmlns': '<methodResponse xmlns:ex="a"xmlns:b="c"><params/></methodResponse>',
    'space in tag': wrap('<string >x</string>'),
    'processing instruction': wrap('<?pi x?><string>x</string>'),
    'second param': '<methodResponse><params><param><value>a</value></param><param><value>b</value></param></params></methodResponse>',
    'member value before name': wrap('<struct><member><value>1</value><name>a</name></member></struct>'),
    'mismatched close': wrap('<string>x</int>'),
    'bad int': wrap('<int>x</int>'),
    'unknown type': wrap('<bogus>x</bogus>'),
    'text beside a type': wrap('a<string>x</string>'),
    'bad entity': wrap('<string>&bogus;</string>'),
    'bad reference in nil (found by the fuzz)': wrap('<nil>&#</nil>'),
    'declaration not at the start': ' <?xml version="1.0"?><methodResponse><params/></methodResponse>',
    'content after the root': wrap('x') + '<x/>',
    truncated: wrap('<string>x</string>').slice(0, -5)
  }
  for (const [what, xml] of Object.entries(cases)) {
    t.equal(scanResponse(xml, MAX_DEPTH), undefined, what)
    // and decodeResponse still gives the tree path's answer
    const reference = tree(xml)
    if (reference.ok) {
      t.strictSame(decodeResponse(xml), reference.value, `${what}: decoded by the tree path`)
    } else {
      t.equal(tryDecode(xml), `XmlRpcParseError ${reference.reason}`, `${what}: refused as by the tree path`)
    }
  }
})

t.test('depth: the scanner steps aside at the limit, the tree path says too-deep', async (t) => {
  let value: JsonValue = 1
  for (let i = 0; i < 5; i++) value = [value]
  const xml = encodeResponse(value)
  t.equal(agree(t, xml, 'depth 5, limit 5', 5), true, 'taken at the limit')
  t.equal(scanResponse(xml, 4), undefined, 'not taken beyond it')
  t.equal(tryDecode(xml, 4), 'XmlRpcParseError too-deep')
})

function randomValue (random: () => number, depth: number): JsonValue {
  const strings = ['', ' ', 'a', '007', '  padded  ', 'x<y&z>"\'', '压力过高', '😀', 'line\nbreak', 'tab\tin', '&amp;', ']]', 'a>b']
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T
  switch (Math.floor(random() * (depth > 3 ? 5 : 7))) {
    case 0: return pick(strings)
    case 1: return pick([0, 1, -1, 42, 2 ** 31 - 1, -(2 ** 31), 2 ** 40, -(2 ** 53) + 1, 0.5, -3.25, 1e-7, 123456.789])
    case 2: return random() < 0.5
    case 3: return null
    case 4: return pick([{ $dateTime: '20240101T12:00:00' }, { $base64: 'AAEC' }]) as unknown as JsonValue
    case 5: return Array.from({ length: Math.floor(random() * 4) }, () => randomValue(random, depth + 1))
    default: {
      const struct: Record<string, JsonValue> = {}
      const keys = ['a', 'b', '1', '__proto__', 'constructor', '名字', 'x y', '&']
      for (let i = Math.floor(random() * 4); i > 0; i--) struct[pick(keys)] = randomValue(random, depth + 1)
      return struct
    }
  }
}

/** The same document as other servers format it: indentation, untyped strings, i4, empty elements. */
function reformat (xml: string, random: () => number): string {
  let out = xml
  if (random() < 0.5) out = out.replace(/></g, () => random() < 0.7 ? '>\n  <' : '><')
  if (random() < 0.3) out = out.replace(/<value><string>([^<]*)<\/string><\/value>/g, '<value>$1</value>')
  if (random() < 0.3) out = out.replace(/<(\/?)int>/g, '<$1i4>')
  if (random() < 0.3) out = out.replace(/<value><string><\/string><\/value>/g, '<value/>')
  if (random() < 0.2) out = out.replace(/<nil\/>/g, '<nil></nil>')
  if (random() < 0.2) out = out.replace(/<data><\/data>/g, '<data/>')
  if (random() < 0.2) out = out.replace('<?xml version="1.0"?>', pickDeclaration(random))
  if (random() < 0.2) {
    // Apache XML-RPC: a namespace on the root, its extensions for i8 and nil
    out = out.replace('<methodResponse>', '<methodResponse xmlns:ex="http://ws.apache.org/xmlrpc/namespaces/extensions">')
      .replace(/<(\/?)i8>/g, '<$1ex:i8>').replace(/<nil\/>/g, '<ex:nil/>')
  }
  if (random() < 0.2) out = out.replace(/\n/g, '\r\n') // .NET on Windows
  if (random() < 0.1) out = '\uFEFF' + out
  if (random() < 0.2) out = out + '\n'
  return out
}

function pickDeclaration (random: () => number): string {
  const declarations = ['', '<?xml version="1.0" encoding="UTF-8"?>', "<?xml version='1.0' encoding='utf-8'?>\n",
    '<?xml version="1.0" encoding="GBK" standalone="yes"?>', '<?xml  version = "1.0"  ?>']
  return declarations[Math.floor(random() * declarations.length)] as string
}

t.test('generated documents, formatted as various servers do: both paths agree, the scanner takes them', async (t) => {
  const rng = new Random(8)
  const random = (): number => rng.next()
  let taken = 0
  const n = 2000
  for (let i = 0; i < n; i++) {
    const doc = reformat(random() < 0.9 ? encodeResponse(randomValue(random, 0)) : encodeFault(Math.floor(random() * 200) - 100, 'f&<' + String(i)), random)
    if (agree(t, doc, `generated #${i}`)) taken++
  }
  t.equal(taken, n, 'every generated document is taken by the scanner')
})

t.test('fuzz: mutated documents; whatever the scanner takes, the tree path decodes the same', async (t) => {
  const rng = new Random(FUZZ_SEED)
  const random = (): number => rng.next()
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T
  const pieces = ['<', '>', '/', '&', ';', '"', '\'', '=', '!', '[', ']', '-', '?', 'x', '0', '1', '.', ' ', '\n', '\r', '\t',
    '<value>', '</value>', '<value/>', '<array>', '<data>', '</data>', '<struct>', '</struct>', '<member>', '<name>', '</name>',
    '<string>', '</string>', '<int>', '<nil/>', '&#', '&#x', '&lt;', '&amp;', '&#0;', '&#13;', '&#xD800;', '<![CDATA[', ']]>',
    '<!--', '-->', '<?', '?>', '<?xml version="1.0"?>', '\uD800', '\uFFFE', '\u0000', '\u0001', '\uFEFF', '<params>', '</param>',
    '<fault>', '</methodResponse>', 'e5', '+', 'true', 'ex:', ':', ' xmlns:ex="x"', ' xmlns="y"', '<ex:nil/>',
    // references: where the validator and decodeEntities could disagree
    '&#65;', '&#x41;', '&#0065;', '&#x1F600;', '&#55296;', '&#xD800;', '&#1114112;', '&#x110000;', '&#xFFFE;', '&#9;',
    '&#x;', '&#;', '&apos;', '&quot;', '&gt;', '&nbsp;', '&a b;', '& ', '&amp', '&#13;', '&#x0D;']
  let taken = 0
  let left = 0
  for (let i = 0; i < FUZZ_N; i++) {
    let doc = reformat(encodeResponse(randomValue(random, 0)), random)
    const edits = 1 + Math.floor(random() * 2)
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(random() * (doc.length + 1))
      // (cutting the document short rarely leaves anything to compare: one case in eight)
      switch (Math.floor(random() * 8) === 0 ? 0 : 1 + Math.floor(random() * 3)) {
        case 0: doc = doc.slice(0, at); break
        case 1: doc = doc.slice(0, at) + pick(pieces) + doc.slice(at); break
        case 2: doc = doc.slice(0, at) + doc.slice(at + 1 + Math.floor(random() * 8)); break
        default: doc = doc.slice(0, at) + pick(pieces) + doc.slice(at + 1)
      }
    }
    if (agree(t, doc, `mutation #${i}`)) taken++
    else left++
  }
  t.ok(taken > 50, `${taken} mutated documents taken by the scanner (and agreed)`)
  t.ok(left > 500, `${left} left to the tree path`)
})
