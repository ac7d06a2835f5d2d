// Charsets of the legacy side, which may speak GBK, GB18030, Big5, … (CONTRACT §1): their labels,
// and the reading side, bytes to text (BOM, XML declaration, Content-Type, fallback; decodeXml).
// Text to bytes, for what the gateway sends, is lib/xml-write.ts's encodeXml.
import { isUtf8 } from 'node:buffer'
import iconv from 'iconv-lite'

const UTF8_LABEL = /^utf-?8$/

/** A charset label iconv-lite knows, lower-cased ('GBK' → 'gbk', 'utf8' → 'utf-8'); unknown → undefined. */
export function normalizeCharset (label: string): string | undefined {
  if (typeof label !== 'string') return undefined
  const lower = label.trim().toLowerCase()
  if (lower === '' || !iconv.encodingExists(lower)) return undefined
  return UTF8_LABEL.test(lower) ? 'utf-8' : lower
}

const UNIVERSAL = /^(?:utf-?(?:8|16|32)(?:le|be)?|ucs-?(?:2|4)|gb18030|cesu8)$/

/** Whether a charset (as normalizeCharset returns it) can encode every Unicode character. */
export function coversUnicode (charset: string): boolean {
  return UNIVERSAL.test(charset)
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

// The IANA names of US-ASCII, plus the common "ascii". A document labelled so is read as UTF-8:
// the same text for every valid ASCII document, and what servers that label raw UTF-8 text as
// ASCII mean (Perl's RPC::XML::Server writes encoding="us-ascii" by default).
const ASCII_LABELS = new Set([
  'us-ascii', 'ascii', 'ansi_x3.4-1968', 'ansi_x3.4-1986', 'iso646-us', 'iso_646.irv:1991', 'iso-ir-6',
  'us', 'ibm367', 'cp367', 'csascii'
])

/** Where the charset a document was read in came from (named in CharsetDecodeError's message). */
export type CharsetSource = 'byte order mark' | 'XML declaration' | 'Content-Type' | 'fallback'

/** Bytes that are not valid in the charset they are read in: never turned into U+FFFD. */
export class CharsetDecodeError extends Error {
  override readonly name = 'CharsetDecodeError'
  /** The charset the bytes were read in ('utf-8' for an ASCII label). */
  readonly charset: string
  readonly source: CharsetSource
  /** The label as written, when it is an ASCII label read as UTF-8. */
  readonly label: string | undefined

  constructor (charset: string, source: CharsetSource, label: string | undefined, options?: ErrorOptions) {
    let why: string
    if (source === 'fallback') {
      why = `${label === undefined ? '' : `${label}, `}the charset for documents that declare none${label === undefined ? '' : ', read as UTF-8'}`
    } else {
      why = label === undefined ? `as its ${source} says` : `its ${source} says ${label}, read as UTF-8`
    }
    super(`bytes that are not valid ${charset.toUpperCase()} (${why})`, options)
    this.charset = charset
    this.source = source
    this.label = label
  }
}

/**
 * An XML body as text. The charset comes from, in order: a BOM (UTF-8, UTF-16, UTF-32); the XML
 * declaration's encoding; the Content-Type charset; `fallback` (then UTF-8). Unknown labels fall
 * through to the next rule; an ASCII label (us-ascii, ANSI_X3.4-1968, …) means UTF-8. A leading BOM
 * is not part of the result. Bytes that are not valid in the charset throw CharsetDecodeError: no
 * U+FFFD appears that the document did not contain.
 */
export function decodeXml (body: Buffer, contentType: string | undefined, fallback: string): string {
  const bom = sniffBom(body)
  if (bom !== undefined) return decodeBytes(body.subarray(bom.length), bom.charset, 'byte order mark', undefined)
  let source: CharsetSource = 'XML declaration'
  let label = declaredXmlEncoding(body)
  let charset = usable(label, true)
  if (charset === undefined) {
    source = 'Content-Type'
    label = charsetFromContentType(contentType)
    charset = usable(label, false)
  }
  if (charset === undefined) {
    source = 'fallback'
    label = fallback
    charset = usable(label, false) ?? 'utf-8'
  }
  return decodeBytes(body, charset, source, charset === 'utf-8' && label !== undefined && isAsciiLabel(label) ? label : undefined)
}

function isAsciiLabel (label: string): boolean {
  return ASCII_LABELS.has(label.trim().toLowerCase())
}

function usable (label: string | undefined, fromDeclaration: boolean): string | undefined {
  if (label === undefined) return undefined
  if (isAsciiLabel(label)) return 'utf-8'
  const charset = normalizeCharset(label)
  if (charset === undefined || (fromDeclaration && WIDE.test(charset))) return undefined
  return charset
}

function decodeBytes (bytes: Buffer, charset: string, source: CharsetSource, asciiLabel: string | undefined): string {
  let text: string
  if (charset === 'utf-8') {
    // One native pass over the bytes, and no second decode, on the path nearly every answer takes.
    if (!isUtf8(bytes)) throw new CharsetDecodeError(charset, source, asciiLabel)
    text = bytes.toString('utf8')
  } else {
    try {
      // The BOM is kept until validDecoding has compared the text with the bytes.
      text = iconv.decode(bytes, charset, { stripBOM: false })
    } catch (err) {
      throw new CharsetDecodeError(charset, source, asciiLabel, { cause: err })
    }
    if (!validDecoding(bytes, text, charset)) throw new CharsetDecodeError(charset, source, asciiLabel)
  }
  return text.charCodeAt(0) === 0xFEFF ? text.slice(1) : text
}

const UTF16 = /^(?:utf-?16|ucs-?2)/
const UTF32 = /^(?:utf-?32|ucs-?4)/
const LONE_SURROGATE = /\p{Cs}/u
// Per universal charset, how it spells U+FFFD.
const replacementBytes = new Map<string, Buffer>()

/**
 * Whether iconv-lite read `bytes` without replacing anything. It writes U+FFFD for what it cannot
 * read, so the text may hold no more U+FFFD than the bytes spell (only GB18030 and the UTFs have the
 * character); UTF-16/32 are decoded by Node, which instead drops a trailing partial unit and keeps
 * lone surrogates.
 */
function validDecoding (bytes: Buffer, text: string, charset: string): boolean {
  if (UTF16.test(charset)) {
    if (bytes.length % 2 !== 0 || LONE_SURROGATE.test(text)) return false
  } else if (UTF32.test(charset)) {
    if (bytes.length % 4 !== 0 || LONE_SURROGATE.test(text)) return false
  }
  let at = text.indexOf('\uFFFD')
  if (at === -1) return true
  // Outside the universal charsets iconv-lite uses U+FFFD only as its placeholder for an undefined
  // byte, never as a character of the charset.
  if (!coversUnicode(charset)) return false
  let spelled = replacementBytes.get(charset)
  if (spelled === undefined) {
    spelled = iconv.encode('\uFFFD', charset, { addBOM: false })
    replacementBytes.set(charset, spelled)
  }
  let inText = 0
  for (; at !== -1; at = text.indexOf('\uFFFD', at + 1)) inText++
  let inBytes = 0
  for (let i = bytes.indexOf(spelled); i !== -1; i = bytes.indexOf(spelled, i + spelled.length)) inBytes++
  return inText <= inBytes
}
