import t from 'tap'
import iconv from 'iconv-lite'
import { CharsetDecodeError, charsetFromContentType, declaredXmlEncoding, decodeXml, normalizeCharset } from '../../lib/charset.js'
import { decodeResponse, encodeResponse } from '../../lib/xmlrpc.js'
import { encodeText } from '../../lib/xml-write.js'

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
  t.throws(() => decodeXml(undeclared, undefined, 'utf-8'), CharsetDecodeError, 'and it matters')
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

t.test('bytes invalid in the charset are an error naming it, never U+FFFD', async (t) => {
  const invalid = (bytes: number[], contentType: string | undefined, fallback: string, message: RegExp, what: string): void => {
    t.throws(() => decodeXml(Buffer.from(bytes), contentType, fallback), { name: 'CharsetDecodeError', message }, what)
  }
  const A = [0x3C, 0x61, 0x3E] // <a>
  const END = [0x3C, 0x2F, 0x61, 0x3E] // </a>
  invalid([...A, 0xFF, 0xFE, 0xFD, ...END], undefined, 'utf-8', /not valid UTF-8 \(the charset for documents that declare none\)/, 'UTF-8')
  invalid([...A, 0xE5, 0x8E, ...END], undefined, 'utf-8', /UTF-8/, 'a truncated UTF-8 sequence')
  invalid([...A, 0xC0, 0xBC, ...END], undefined, 'utf-8', /UTF-8/, 'an overlong UTF-8 form of <')
  invalid([...A, 0xED, 0xA0, 0x80, ...END], undefined, 'utf-8', /UTF-8/, 'a UTF-8 encoded surrogate')
  invalid([0xEF, 0xBB, 0xBF, ...A, 0xFF, ...END], undefined, 'gbk', /not valid UTF-8 \(as its byte order mark says\)/, 'after a UTF-8 BOM')
  invalid([...A, 0x81, 0x20, ...END], undefined, 'gbk', /not valid GBK/, 'a GBK lead byte without its trail')
  invalid([...A, 0xFF, ...END], 'text/xml; charset=GBK', 'utf-8', /not valid GBK \(as its Content-Type says\)/, 'GBK named by the Content-Type')
  invalid([...iconv.encode('<?xml version="1.0" encoding="GBK"?><a>', 'gbk'), 0xD1], undefined, 'utf-8', /not valid GBK \(as its XML declaration says\)/, 'a GBK document cut inside a character')
  invalid([...A, 0x80, ...END], undefined, 'big5', /BIG5/, 'Big5')
  invalid([...A, 0x81, ...END], undefined, 'windows-1252', /WINDOWS-1252/, 'a byte windows-1252 leaves undefined')
  invalid([...A, 0x9D, ...END], undefined, 'windows-1252', /WINDOWS-1252/, 'the one iconv-lite writes for U+FFFD, too')
  invalid([0x3C, 0x00, 0x61], 'text/xml; charset=utf-16le', 'utf-8', /UTF-16LE/, 'UTF-16 with an odd byte count')
  invalid([0x3C, 0x00, 0x00, 0xD8, 0x3E, 0x00], 'text/xml; charset=utf-16le', 'utf-8', /UTF-16LE/, 'UTF-16 with a lone surrogate')

  t.equal(decodeXml(Buffer.from('<a>\uFFFD</a>'), undefined, 'utf-8'), '<a>\uFFFD</a>', 'a U+FFFD the UTF-8 document holds is text')
  const withReplacement = iconv.encode(`<a>\uFFFD ${SIMPLIFIED} \uFFFD</a>`, 'gb18030')
  t.equal(decodeXml(withReplacement, undefined, 'gb18030'), `<a>\uFFFD ${SIMPLIFIED} \uFFFD</a>`, 'GB18030 can carry U+FFFD: a valid document still decodes')
  t.throws(() => decodeXml(Buffer.concat([withReplacement, Buffer.from([0x81])]), undefined, 'gb18030'), { name: 'CharsetDecodeError', message: /GB18030/ },
    'one more U+FFFD than the GB18030 bytes spell is an invalid byte')
  t.equal(decodeXml(iconv.encode(`<a>${SIMPLIFIED}</a>`, 'gb18030'), undefined, 'gb18030'), `<a>${SIMPLIFIED}</a>`)
  t.equal(decodeXml(Buffer.alloc(0), undefined, 'gbk'), '')
  t.equal(decodeXml(Buffer.alloc(0), undefined, 'utf-8'), '')
  const err = t.throws(() => decodeXml(Buffer.from([0xFF]), undefined, 'gbk')) as CharsetDecodeError
  t.match(err, { charset: 'gbk', source: 'fallback', label: undefined })
})

t.test('an ASCII label means UTF-8: what a Perl RPC::XML server sends', async (t) => {
  const text = `<methodResponse><params><param><value><string>${SIMPLIFIED} é</string></value></param></params></methodResponse>`
  for (const label of ['us-ascii', 'US-ASCII', 'ascii', 'ANSI_X3.4-1968', 'iso646-us', 'ISO646-US']) {
    const doc = `<?xml version="1.0" encoding="${label}"?>${text}`
    t.strictSame(decodeResponse(decodeXml(Buffer.from(doc), undefined, 'gbk')), { fault: false, value: `${SIMPLIFIED} é` }, `declared ${label}`)
    t.equal(decodeXml(Buffer.from(text), `text/xml; charset=${label}`, 'gbk'), text, `Content-Type charset=${label}`)
  }
  t.equal(decodeXml(Buffer.from(text), undefined, 'us-ascii'), text, 'and as the fallback')
  t.equal(decodeXml(Buffer.from('<?xml version="1.0" encoding="us-ascii"?><a>plain</a>'), undefined, 'utf-8'), '<?xml version="1.0" encoding="us-ascii"?><a>plain</a>', 'plain ASCII is unchanged')
  t.throws(() => decodeXml(Buffer.from([...Buffer.from('<?xml version="1.0" encoding="US-ASCII"?><a>'), 0xE9, 0x3C, 0x2F, 0x61, 0x3E]), undefined, 'gbk'),
    { name: 'CharsetDecodeError', charset: 'utf-8', label: 'US-ASCII', message: /not valid UTF-8 \(its XML declaration says US-ASCII, read as UTF-8\)/ },
    'a Latin-1 é under an ASCII label is invalid UTF-8: still an error')
  t.throws(() => decodeXml(Buffer.from([0xFF]), 'text/xml; charset=ascii', 'gbk'), { message: /its Content-Type says ascii, read as UTF-8/ })
})
