// The writing side (lib/xml-write.ts): escaping and the declaration, and encodeXml, which carries
// every document the gateway sends into the legacy charset without losing a character.
import t from 'tap'
import iconv from 'iconv-lite'
import { decodeXml, normalizeCharset } from '../../lib/charset.js'
import { CharsetEncodeError, encodeText, encodeXml, escapeXml, xmlDeclaration } from '../../lib/xml-write.js'
import { decodeCall, decodeResponse, encodeCall, encodeResponse } from '../../lib/xmlrpc.js'
import { jsonToXml, xmlToJson } from '../../lib/xml.js'

const SIMPLIFIED = '压力过高'
const TRADITIONAL = '壓力過高'

t.test('escapeXml: markup and CR in text; tab and LF too in attribute values', async (t) => {
  t.equal(escapeXml('plain 压力 😀'), 'plain 压力 😀', 'nothing to do: unchanged')
  t.equal(escapeXml('a & b < c > d " e \' f'), 'a &amp; b &lt; c &gt; d &quot; e \' f', 'the apostrophe needs nothing: values are double-quoted')
  t.equal(escapeXml('1\r\n2\t3'), '1&#13;\n2\t3', 'text: a CR is a reference (a reader would make it LF), tab and LF stay')
  t.equal(escapeXml('1\r\n2\t3', true), '1&#13;&#10;2&#9;3', 'attribute: attribute-value normalisation would make tab and LF spaces')
  const all = '&<>"\'\r\n\t x 😀 '
  t.strictSame(xmlToJson(`<a b="${escapeXml(all, true)}">${escapeXml(all)}</a>`), { a: { '@b': all, '#text': all } }, 'what it writes reads back exactly')
})

t.test('escapeXml: what XML 1.0 cannot carry is a TypeError naming it', async (t) => {
  t.throws(() => escapeXml('a\u0001'), { name: 'TypeError', message: /^U\+0001 at index 1 cannot be represented in XML 1\.0/ })
  t.throws(() => escapeXml('\uFFFE', true), { name: 'TypeError', message: /U\+FFFE/ })
  t.throws(() => escapeXml('\uFFFF'), TypeError)
  t.throws(() => escapeXml('x\uD83D'), { name: 'TypeError', message: /lone surrogate U\+D83D at index 1/ }, 'a high surrogate at the end')
  t.throws(() => escapeXml('\uD83Dx'), { message: /lone surrogate U\+D83D/ }, 'a high surrogate before a non-surrogate')
  t.throws(() => escapeXml('\uDE00'), { message: /lone surrogate U\+DE00 at index 0/ }, 'a low surrogate alone')
  t.equal(escapeXml('<\uD83D\uDE00>'), '&lt;😀&gt;', 'a pair is one character')
})

t.test('xmlDeclaration: an encoding only when a label is given, and only a valid one', async (t) => {
  t.equal(xmlDeclaration(undefined), '<?xml version="1.0"?>')
  t.equal(xmlDeclaration('GBK'), '<?xml version="1.0" encoding="GBK"?>')
  t.equal(xmlDeclaration('ISO-8859-1'), '<?xml version="1.0" encoding="ISO-8859-1"?>')
  for (const label of ['', ' GBK', 'g"bk', '936', 'a?>x']) {
    t.throws(() => xmlDeclaration(label), { name: 'TypeError', message: /invalid XML encoding label/ }, JSON.stringify(label))
  }
})

t.test('encodeXml writes what a charset lacks as character references', async (t) => {
  const xml = encodeResponse(`${SIMPLIFIED} 😀 ${TRADITIONAL}`, { encoding: 'big5' })
  const bytes = encodeXml(xml, 'big5')
  const decoded = decodeResponse(decodeXml(bytes, undefined, 'utf-8'))
  t.strictSame(decoded, { fault: false, value: `${SIMPLIFIED} 😀 ${TRADITIONAL}` }, 'nothing lost through Big5')
  t.match(iconv.decode(bytes, 'big5'), '&#x1F600;', 'the emoji went as a reference')
  t.notMatch(iconv.decode(encodeText(xml, 'big5'), 'big5'), '😀', 'encodeText alone loses it')
  t.same(encodeXml('<a>压力</a>', 'gbk'), iconv.encode('<a>压力</a>', 'gbk'), 'representable text is left alone')
  t.same(encodeXml('<a>😀</a>', 'gb18030'), iconv.encode('<a>😀</a>', 'gb18030'), 'GB18030 covers everything')
  t.equal(encodeXml('<a>😀</a>', 'utf8').toString(), '<a>😀</a>')
  t.throws(() => encodeXml('x', 'nope-42'), TypeError)
})

// Every BMP character XML 1.0 can carry as text (escapeXml writes the few others as references
// itself), and a sample of the other planes: emoji, CJK Extension B, music, the last plane.
function everyCharacter (): string {
  let text = '\t\n'
  for (let c = 0x20; c <= 0xFFFD; c++) if (c < 0xD800 || c > 0xDFFF) text += String.fromCharCode(c)
  return text + '😀𠀀\u{2A6D6}\u{1D11E}\u{10FFFD}'
}

t.test('encodeXml: whatever our writers write arrives exactly, in any charset', async (t) => {
  const all = everyCharacter()
  for (const charset of ['gbk', 'big5', 'shift_jis', 'euc-kr', 'iso-8859-1', 'windows-1252', 'us-ascii', 'gb18030', 'utf-8']) {
    const declaration = charset === 'utf-8' ? {} : { encoding: charset.toUpperCase() }
    const call = encodeXml(encodeCall('echo', [all, { [all]: all }], declaration), charset)
    t.strictSame(decodeCall(decodeXml(call, undefined, 'utf-8')), { method: 'echo', params: [all, { [all]: all }] }, `XML-RPC text and member names in ${charset}`)
    const doc = encodeXml(jsonToXml({ root: { '@value': all, '#text': all, child: [all, { '@a': all }] } }, declaration), charset)
    t.strictSame(xmlToJson(decodeXml(doc, undefined, 'utf-8')), { root: { '@value': all, '#text': all, child: [all, { '@a': all }] } }, `generic XML text and attribute values in ${charset}`)
  }
})

t.test('encodeXml writes a reference for what iconv-lite would write as something else', async (t) => {
  // iconv-lite writes U+E7C7 in GBK as a four-byte GB18030 sequence that GBK reads as two U+FFFD and a "5".
  t.not(iconv.decode(iconv.encode('\uE7C7', 'gbk'), 'gbk'), '\uE7C7', 'the quirk is real')
  t.equal(iconv.decode(encodeXml('<a>\uE7C7</a>', 'gbk'), 'gbk'), '<a>&#xE7C7;</a>')
  t.equal(iconv.decode(encodeXml('<a b="😀">😀 压力 € 𠀀</a>', 'gbk'), 'gbk'), '<a b="&#x1F600;">&#x1F600; 压力 € &#x20000;</a>', 'GBK has € (0x80)')
  t.equal(iconv.decode(encodeXml('<a b="😀">😀 壓力 € 𠀀</a>', 'big5'), 'big5'), '<a b="&#x1F600;">&#x1F600; 壓力 € &#x20000;</a>', 'Big5 (iconv-lite: HKSCS) has €')
  t.equal(iconv.decode(encodeXml('<a>\uE5E5 😀</a>', 'gb18030'), 'gb18030'), '<a>&#xE5E5; 😀</a>', 'GB18030: iconv-lite cannot round-trip U+E5E5')
})

t.test('encodeXml: a character the charset lacks where XML allows no reference is an error naming the charset', async (t) => {
  const refused = (xml: string, charset: string, codePoint: number, where: RegExp, what: string): void => {
    t.throws(() => encodeXml(xml, charset), { name: 'CharsetEncodeError', charset: normalizeCharset(charset), codePoint, message: where }, what)
  }
  refused(jsonToXml({ 한: 'x' }, { encoding: 'GBK' }), 'gbk', 0xD55C, /^U\+D55C \(한\) cannot be written in GBK inside an element or attribute name/, 'an element name')
  refused(jsonToXml({ a: { b: { क: '' } } }), 'Big5', 0x0915, /BIG5 inside an element or attribute name/, 'a nested element name')
  refused(jsonToXml({ a: { '@ŉ': '1' } }), 'gbk', 0x0149, /GBK inside an element or attribute name/, 'an attribute name')
  refused('<a><!-- 😀 --></a>', 'gbk', 0x1F600, /inside a comment/, 'a comment')
  refused('<a><![CDATA[ x > 😀 ]]></a>', 'big5', 0x1F600, /inside a CDATA section/, 'a CDATA section')
  refused('<?pi 😀?><a/>', 'gbk', 0x1F600, /inside a processing instruction/, 'a processing instruction')
  refused('<!DOCTYPE a><a>😀</a>', 'gbk', 0x1F600, /inside a DOCTYPE/, 'after a DOCTYPE')
  refused('<a>&😀;</a>', 'gbk', 0x1F600, /inside an entity reference/, 'an entity reference')
  t.equal(iconv.decode(encodeXml('<a><!-- x --><![CDATA[ ]]> 😀 <?pi?> 😀</a>', 'gbk'), 'gbk'), '<a><!-- x --><![CDATA[ ]]> &#x1F600; <?pi?> &#x1F600;</a>', 'text after them takes references again')
  t.equal(iconv.decode(encodeXml('<压力 a="1">😀</压力>', 'gbk'), 'gbk'), '<压力 a="1">&#x1F600;</压力>', 'a name the charset can write is fine')
  t.equal(iconv.decode(encodeXml('<한>😀</한>', 'gb18030'), 'gb18030'), '<한>😀</한>', 'GB18030 writes every name')
  t.throws(() => encodeXml('<a>\uD800</a>', 'gbk'), { name: 'TypeError', message: /lone surrogate U\+D800/ })
  t.type(new CharsetEncodeError(0x1F600, 'gbk', 'x'), TypeError, 'a TypeError, as the writers throw for what has no XML form')
})

t.test('encodeXml costs one encode when the charset has every character, and none beyond UTF-8', async (t) => {
  const xml = encodeCall('echo', [`${SIMPLIFIED} plain ascii € ${SIMPLIFIED}`, { 压力: 3 }], { encoding: 'GBK' })
  encodeXml(xml, 'gbk') // characters are looked up once per process and charset
  const { encode, decode } = iconv
  let calls = 0
  iconv.encode = (...args: Parameters<typeof encode>) => { calls++; return encode(...args) }
  iconv.decode = (...args: Parameters<typeof decode>) => { calls++; return decode(...args) }
  t.teardown(() => { iconv.encode = encode; iconv.decode = decode })
  t.same(encodeXml(xml, 'gbk'), encode(xml, 'gbk'))
  t.equal(calls, 1, 'GBK: one encode, no decode')
  encodeXml('<a>plain</a>', 'big5')
  calls = 0
  encodeXml('<a>plain</a>', 'big5')
  t.equal(calls, 1, 'ASCII only: one encode')
  calls = 0
  t.equal(encodeXml(xml, 'utf-8').toString(), xml)
  t.equal(calls, 0, 'UTF-8: no iconv at all')
})
