// The reading side (lib/xml-read.ts) on its own: what both decoders get from it before they walk a
// tree. The decoders' own tests (xmlrpc.test.ts, xml.test.ts) cover the same ground through them.
import t from 'tap'
import type { Test } from 'tap'
import {
  DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, XmlInputError, decodeAttribute, decodeEntities, isWhitespace, limitsOf,
  nameOf, parseDocument, setOwn
} from '../../lib/xml-read.js'

class TestError extends XmlInputError {}

function refused (t: Test, fn: () => unknown, reason: string, what: string): void {
  try {
    fn()
  } catch (err) {
    t.ok(err instanceof TestError, `${what}: throws the caller's class (got ${String(err)})`)
    t.equal((err as TestError).reason, reason, `${what}: reason`)
    return
  }
  t.fail(`${what}: expected a ${reason} error, nothing was thrown`)
}

t.test('limitsOf: the defaults, and what a caller may lower or raise', async (t) => {
  t.strictSame(limitsOf(undefined), { maxBytes: DEFAULT_MAX_BYTES, maxDepth: DEFAULT_MAX_DEPTH })
  t.strictSame(limitsOf({ maxBytes: 10, maxDepth: 2.7 }), { maxBytes: 10, maxDepth: 2 })
  t.strictSame(limitsOf({ maxBytes: -1, maxDepth: -1 }), { maxBytes: DEFAULT_MAX_BYTES, maxDepth: DEFAULT_MAX_DEPTH }, 'negative: the default')
})

t.test('parseDocument: the root element, its children in order, text kept exactly', async (t) => {
  const root = parseDocument('\uFEFF<?xml version="1.0"?><r a="1"> x <b/>&amp;</r>', 1000, 8, true, TestError)
  t.equal(root.name, 'r')
  t.strictSame(root.attrs, { '@a': '1' })
  t.strictSame(root.children.map(nameOf), ['#text', 'b', '#text'])
  t.equal(root.children[0]?.['#text'], ' x ', 'not trimmed')
  t.equal(root.children[2]?.['#text'], '&amp;', 'entities are left to decodeEntities')
  t.equal(parseDocument('<r a="1"/>', 1000, 8, false, TestError).attrs, undefined, 'attributes only for the generic mapping')
})

t.test('parseDocument refuses, with the caller\'s error class and a reason', async (t) => {
  refused(t, () => parseDocument(42, 1000, 8, true, TestError), 'malformed', 'not a string')
  refused(t, () => parseDocument('<r>' + 'x'.repeat(100) + '</r>', 100, 8, true, TestError), 'too-large', 'over maxBytes')
  refused(t, () => parseDocument('<!DOCTYPE r [<!ENTITY e "x">]><r>&e;</r>', 1000, 8, true, TestError), 'hostile', 'a DOCTYPE')
  refused(t, () => parseDocument('<r><!ENTITY e "x"></r>', 1000, 8, true, TestError), 'hostile', 'an ENTITY declaration')
  refused(t, () => parseDocument('<r><!foo></r>', 1000, 8, true, TestError), 'malformed', 'another declaration')
  refused(t, () => parseDocument('<r><!-- open </r>', 1000, 8, true, TestError), 'malformed', 'an unclosed comment')
  refused(t, () => parseDocument('<a><b>x</a>', 1000, 8, true, TestError), 'malformed', 'mismatched tags')
  refused(t, () => parseDocument('<a/><b/>', 1000, 8, true, TestError), 'malformed', 'two roots after a self-closing one')
  refused(t, () => parseDocument('<a/>junk', 1000, 8, true, TestError), 'malformed', 'junk after the root')
  refused(t, () => parseDocument('', 1000, 8, true, TestError), 'malformed', 'no root')
  // The parser's bound is a backstop for the recursive walks, which count exactly: it lets a level
  // more through than it is given.
  refused(t, () => parseDocument('<a><b><c><d>x</d></c></b></a>', 1000, 2, true, TestError), 'too-deep', 'nested past the element bound')
  t.doesNotThrow(() => parseDocument('<a><b>x</b></a>', 1000, 2, true, TestError), 'within it')
  t.doesNotThrow(() => parseDocument('<a/><!-- c --><?pi x?>\n', 1000, 8, true, TestError), 'comments, PIs and blanks after the root are fine')
})

t.test('decodeEntities: the five predefined entities and character references, nothing else', async (t) => {
  t.equal(decodeEntities('&lt;&gt;&amp;&quot;&apos; &#13;&#x1F600;&#x41;&#65;', TestError), '<>&"\' \r😀AA')
  t.equal(decodeEntities('no references', TestError), 'no references')
  refused(t, () => decodeEntities('&nbsp;', TestError), 'malformed', 'an undeclared entity')
  refused(t, () => decodeEntities('a & b', TestError), 'malformed', 'a bare ampersand')
  refused(t, () => decodeEntities('&#0;', TestError), 'malformed', 'a reference to NUL')
  refused(t, () => decodeEntities('&#xD800;', TestError), 'malformed', 'a reference to a surrogate')
  refused(t, () => decodeEntities('&#xFFFE;', TestError), 'malformed', 'a reference to a non-character')
  t.equal(decodeAttribute('a &amp; b', TestError), 'a & b')
  refused(t, () => decodeAttribute('a < b', TestError), 'malformed', '< in an attribute value')
})

t.test('isWhitespace and setOwn', async (t) => {
  t.ok(isWhitespace(' \t\r\n'))
  t.ok(isWhitespace(''))
  t.notOk(isWhitespace('\u00A0'), 'only XML whitespace')
  const target: Record<string, number> = {}
  setOwn(target, '__proto__', 1)
  setOwn(target, 'a', 2)
  t.equal(Object.getPrototypeOf(target), Object.prototype, 'no prototype touched')
  t.strictSame(Object.keys(target), ['__proto__', 'a'])
  t.equal(Object.getOwnPropertyDescriptor(target, '__proto__')?.value, 1)
})
