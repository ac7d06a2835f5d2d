// Bytes ⇄ strings for the legacy side, which may speak GBK, GB18030, Big5, … (CONTRACT §1).
import iconv from 'iconv-lite'

const UTF8_LABEL = /^utf-?8$/

/** A charset label iconv-lite knows, lower-cased ('GBK' → 'gbk', 'utf8' → 'utf-8'); unknown → undefined. */
export function normalizeCharset (label: string): string | undefined {
  if (typeof label !== 'string') return undefined
  const lower = label.trim().toLowerCase()
  if (lower === '' || !iconv.encodingExists(lower)) return undefined
  return UTF8_LABEL.test(lower) ? 'utf-8' : lower
}

/**
 * The `charset` parameter of a Content-Type header (`text/xml; charset="GBK"` → 'GBK'), as written:
 * pass it through normalizeCharset to use it.
 */
export function charsetFromContentType (contentType: string | undefined): string | undefined {
  if (typeof contentType !== 'string') return undefined
  const params = contentType.split(';')
  for (let i = 1; i < params.length; i++) {
    const param = params[i] as string
    const eq = param.indexOf('=')
    if (eq === -1 || param.slice(0, eq).trim().toLowerCase() !== 'charset') continue
    let value = param.slice(eq + 1).trim()
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1).trim()
    return value === '' ? undefined : value
  }
  return undefined
}

// How far into the document the declaration may reach; real ones are well under 100 bytes.
const DECLARATION_WINDOW = 512
const ENCODING_PSEUDO_ATTRIBUTE = /[ \t\r\n]encoding[ \t\r\n]*=[ \t\r\n]*(?:"([A-Za-z][A-Za-z0-9._-]*)"|'([A-Za-z][A-Za-z0-9._-]*)')/

/**
 * The `encoding="…"` of an XML declaration at the very start of `head` (after an optional UTF-8 BOM),
 * read as ASCII and returned as written; undefined when there is no declaration or it names none.
 */
export function declaredXmlEncoding (head: Buffer): string | undefined {
  const start = hasUtf8Bom(head) ? 3 : 0
  if (head.length < start + 6) return undefined
  const text = head.toString('latin1', start, Math.min(head.length, start + DECLARATION_WINDOW))
  if (!/^<\?xml[ \t\r\n]/.test(text)) return undefined
  const end = text.indexOf('?>')
  if (end === -1) return undefined
  const match = ENCODING_PSEUDO_ATTRIBUTE.exec(text.slice(0, end))
  if (match === null) return undefined
  return match[1] ?? match[2]
}

function hasUtf8Bom (bytes: Buffer): boolean {
  return bytes.length >= 3 && bytes[0] === 0xEF && bytes[1] === 0xBB && bytes[2] === 0xBF
}

function sniffBom (bytes: Buffer): { charset: string, length: number } | undefined {
  if (hasUtf8Bom(bytes)) return { charset: 'utf-8', length: 3 }
  if (bytes.length < 2) return undefined
  const b0 = bytes[0]
  const b1 = bytes[1]
  if (b0 === 0xFF && b1 === 0xFE) {
    // FF FE 00 00 is UTF-32LE: a UTF-16 document cannot start with U+0000, which XML forbids.
    if (bytes.length >= 4 && bytes[2] === 0 && bytes[3] === 0) return { charset: 'utf-32le', length: 4 }
    return { charset: 'utf-16le', length: 2 }
  }
  if (b0 === 0xFE && b1 === 0xFF) return { charset: 'utf-16be', length: 2 }
  if (bytes.length >= 4 && b0 === 0 && b1 === 0 && bytes[2] === 0xFE && bytes[3] === 0xFF) return { charset: 'utf-32be', length: 4 }
  return undefined
}

// A declaration that was readable as ASCII cannot truly be in UTF-16/32: such a label is ignored.
const WIDE = /^(?:utf-?(?:16|32)|ucs-?(?:2|4))/

function usable (label: string | undefined, fromDeclaration: boolean): string | undefined {
  if (label === undefined) return undefined
  const charset = normalizeCharset(label)
  if (charset === undefined || (fromDeclaration && WIDE.test(charset))) return undefined
  return charset
}

/**
 * An XML body as text. The charset comes from, in order: a BOM (UTF-8, UTF-16, UTF-32); the XML
 * declaration's encoding; the Content-Type charset; `fallback` (then UTF-8). Unknown labels fall
 * through to the next rule. A leading BOM is not part of the result. Never throws: bytes invalid in
 * the charset become U+FFFD.
 */
export function decodeXml (body: Buffer, contentType: string | undefined, fallback: string): string {
  const bom = sniffBom(body)
  if (bom !== undefined) return decodeBytes(body.subarray(bom.length), bom.charset)
  const charset = usable(declaredXmlEncoding(body), true) ??
    usable(charsetFromContentType(contentType), false) ??
    usable(fallback, false) ??
    'utf-8'
  return decodeBytes(body, charset)
}

function decodeBytes (bytes: Buffer, charset: string): string {
  let text: string
  try {
    text = charset === 'utf-8' ? bytes.toString('utf8') : iconv.decode(bytes, charset)
  } catch {
    text = bytes.toString('utf8')
  }
  return text.charCodeAt(0) === 0xFEFF ? text.slice(1) : text
}

/** `text` in `charset` (any label normalizeCharset accepts); a TypeError for an unknown charset. */
export function encodeText (text: string, charset: string): Buffer {
  const normalized = normalizeCharset(charset)
  if (normalized === undefined) throw new TypeError(`unknown charset ${JSON.stringify(charset)}`)
  return normalized === 'utf-8' ? Buffer.from(text, 'utf8') : iconv.encode(text, normalized)
}

// Charsets that can encode every Unicode character.
const UNIVERSAL = /^(?:utf-?(?:8|16|32)(?:le|be)?|ucs-?(?:2|4)|gb18030|cesu8)$/

/**
 * Like encodeText, for an XML document: a character the charset cannot represent is written as a
 * character reference (`&#x1F600;`) instead of iconv-lite's "?", so nothing is lost. Only for text that
 * is XML markup or content outside CDATA sections and names (what lib/xmlrpc.ts and lib/xml.ts write,
 * with non-ASCII characters only in text and attribute values).
 */
export function encodeXml (xml: string, charset: string): Buffer {
  const normalized = normalizeCharset(charset)
  if (normalized === undefined) throw new TypeError(`unknown charset ${JSON.stringify(charset)}`)
  if (normalized === 'utf-8') return Buffer.from(xml, 'utf8')
  const bytes = iconv.encode(xml, normalized)
  if (UNIVERSAL.test(normalized) || iconv.decode(bytes, normalized) === xml) return bytes
  let escaped = ''
  let run = 0 // start of the run of characters not yet copied
  for (let i = 0; i < xml.length;) {
    const cp = xml.codePointAt(i) as number
    const width = cp > 0xFFFF ? 2 : 1
    if (cp >= 0x80) {
      const ch = xml.slice(i, i + width)
      if (iconv.decode(iconv.encode(ch, normalized), normalized) !== ch) {
        escaped += xml.slice(run, i) + '&#x' + cp.toString(16).toUpperCase() + ';'
        run = i + width
      }
    }
    i += width
  }
  return iconv.encode(escaped + xml.slice(run), normalized)
}
