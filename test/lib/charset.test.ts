import t from 'tap'
import iconv from 'iconv-lite'
import {
  charsetFromContentType, declaredXmlEncoding, decodeXml, encodeText, encodeXml, normalizeCharset
} from '../../lib/charset.js'
import { decodeResponse, encodeResponse } from '../../lib/xmlrpc.js'

const SIMPLIFIED = '压力过高'
const TRADITIONAL = '壓力過高'

t.test('normalizeCharset', async (t) => {
  t.equal(normalizeCharset('GBK'), 'gbk')
  t.equal(normalizeCharset('utf8'), 'utf-8')
  t.equal(normalizeCharset('UTF-8'), 'utf-8')
  t.equal(normalizeCharset(' GB18030 '), 'gb18030')
  t.equal(normalizeCharset('Big5'), 'big5')
  t.equal(normalizeCharset('ISO-8859-1'), 'iso-8859-1')
  t.equal(normalizeCharset('nope-42'), undefined)
  t.equal(normalizeCharset(''), undefined)
})

t.test('charsetFromContentType', async (t) => {
  t.equal(charsetFromContentType('text/xml; charset=GBK'), 'GBK')
  t.equal(charsetFromContentType('text/xml;charset="big5"'), 'big5')
  t.equal(charsetFromContentType('text/xml; boundary=x; Charset = utf-8 '), 'utf-8')
  t.equal(charsetFromContentType('text/xml'), undefined)
  t.equal(charsetFromContentType('text/xml; charset='), undefined)
  t.equal(charsetFromContentType(undefined), undefined)
})

t.test('declaredXmlEncoding', async (t) => {
  t.equal(declaredXmlEncoding(Buffer.from('<?xml version="1.0" encoding="GBK"?><a/>')), 'GBK')
  t.equal(declaredXmlEncoding(Buffer.from("<?xml version='1.0' encoding='big5' standalone='yes'?>")), 'big5')
  t.equal(declaredXmlEncoding(Buffer.from('\uFEFF<?xml version="1.0" encoding="gb18030"?>')), 'gb18030', 'after a UTF-8 BOM')
  t.equal(declaredXmlEncoding(Buffer.from('<?xml version="1.0"?><a encoding="gbk"/>')), undefined, 'only inside the declaration')
  t.equal(declaredXmlEncoding(Buffer.from(' <?xml version="1.0" encoding="GBK"?>')), undefined, 'only at the very start')
  t.equal(declaredXmlEncoding(Buffer.from('<a/>')), undefined)
  t.equal(declaredXmlEncoding(Buffer.from('<?xml version="1.0" encoding="GBK"')), undefined, 'unterminated declaration')
  t.equal(declaredXmlEncoding(Buffer.alloc(0)), undefined)
})

t.test('Chinese text round-trips through the legacy charsets', async (t) => {
  for (const [charset, text] of [['gbk', SIMPLIFIED], ['gb18030', SIMPLIFIED], ['big5', TRADITIONAL], ['utf-8', SIMPLIFIED], ['GBK', SIMPLIFIED]]) {
    const bytes = encodeText(text as string, charset as string)
    t.equal(decodeXml(bytes, undefined, charset as string), text, `${charset}`)
  }
  t.same([...encodeText(SIMPLIFIED, 'gbk')], [0xD1, 0xB9, 0xC1, 0xA6, 0xB9, 0xFD, 0xB8, 0xDF], 'GBK bytes')
  t.same([...encodeText(TRADITIONAL, 'big5')], [...iconv.encode(TRADITIONAL, 'big5')], 'Big5 bytes')
  t.equal(encodeText(SIMPLIFIED, 'utf8').toString('utf8'), SIMPLIFIED)
  t.throws(() => encodeText('x', 'nope-42'), TypeError)
})

t.test('which charset wins', async (t) => {
  const doc = (decl: string): string => `<?xml version="1.0"${decl}?><message>${SIMPLIFIED}</message>`
  const gbkDeclared = iconv.encode(doc(' encoding="GBK"'), 'gbk')
  t.equal(decodeXml(gbkDeclared, 'text/xml; charset=utf-8', 'big5'), doc(' encoding="GBK"'), 'the declaration beats the Content-Type')
  const undeclared = iconv.encode(doc(''), 'gbk')
  t.equal(decodeXml(undeclared, 'text/xml; charset=gbk', 'utf-8'), doc(''), 'the Content-Type beats the fallback')
  t.equal(decodeXml(undeclared, 'text/xml', 'gbk'), doc(''), 'the fallback when neither says: a GBK body with no declaration')
  t.equal(decodeXml(undeclared, undefined, 'GBK'), doc(''), 'fallback labels are normalised too')
  t.not(decodeXml(undeclared, undefined, 'utf-8'), doc(''), 'and it matters')
  t.equal(decodeXml(Buffer.from(doc('')), undefined, 'nope-42'), doc(''), 'an unknown fallback means UTF-8')
  const unknownDeclared = iconv.encode(doc(' encoding="x-unknown"'), 'gbk')
  t.equal(decodeXml(unknownDeclared, 'text/xml; charset=GBK', 'utf-8'), doc(' encoding="x-unknown"'), 'an unknown declared label falls through to the Content-Type')
  t.equal(decodeXml(undeclared, 'text/xml; charset=bogus', 'gbk'), doc(''), 'an unknown Content-Type charset falls through to the fallback')
  const lyingUtf16 = Buffer.from(doc(' encoding="UTF-16"'))
  t.equal(decodeXml(lyingUtf16, undefined, 'utf-8'), doc(' encoding="UTF-16"'), 'a UTF-16 label in an ASCII-readable declaration is ignored')
  const big5 = iconv.encode(`<?xml version="1.0" encoding="big5"?><m>${TRADITIONAL}</m>`, 'big5')
  t.equal(decodeXml(big5, 'text/xml; charset=gbk', 'gbk'), `<?xml version="1.0" encoding="big5"?><m>${TRADITIONAL}</m>`)
})

t.test('BOMs win and are stripped', async (t) => {
  const text = `<?xml version="1.0" encoding="GBK"?><m>${SIMPLIFIED}</m>`
  const utf8 = Buffer.concat([Buffer.from([0xEF, 0xBB, 0xBF]), Buffer.from(text)])
  t.equal(decodeXml(utf8, 'text/xml; charset=big5', 'gbk'), text, 'UTF-8 BOM beats the declaration, the header and the fallback')
  const utf16le = Buffer.concat([Buffer.from([0xFF, 0xFE]), Buffer.from(text, 'utf16le')])
  t.equal(decodeXml(utf16le, 'text/xml; charset=gbk', 'gbk'), text, 'UTF-16LE BOM')
  const utf16be = Buffer.from(Buffer.concat([Buffer.from([0xFE, 0xFF]), Buffer.from(text, 'utf16le').swap16()]))
  t.equal(decodeXml(utf16be, undefined, 'gbk'), text, 'UTF-16BE BOM')
  t.equal(decodeXml(Buffer.from('\uFEFF<a/>'), undefined, 'utf-8').charCodeAt(0), 0x3C, 'no BOM left in the string')
  t.strictSame(decodeResponse(decodeXml(Buffer.from('\uFEFF' + encodeResponse(SIMPLIFIED)), undefined, 'utf-8')), { fault: false, value: SIMPLIFIED })
})

t.test('decoding never throws', async (t) => {
  t.equal(decodeXml(Buffer.from([0x3C, 0x61, 0x3E, 0xFF, 0xFE, 0xFD, 0x3C, 0x2F, 0x61, 0x3E]), undefined, 'utf-8'), '<a>\uFFFD\uFFFD\uFFFD</a>')
  t.type(decodeXml(Buffer.from([0x81, 0xFF, 0x00]), undefined, 'gbk'), 'string')
  t.equal(decodeXml(Buffer.alloc(0), undefined, 'gbk'), '')
  t.equal(decodeXml(Buffer.from([0xFF]), undefined, 'utf-8'), '\uFFFD')
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
