// The writing side of XML: every document the gateway sends (XML-RPC calls, /api/xml/* JSON
// bodies) and the simulator answers is built with escapeXml and xmlDeclaration, by
// lib/xmlrpc-encode.ts or lib/xml.ts's jsonToXml, and turned into the legacy charset's bytes by
// encodeXml. The reading side is lib/xml-read.ts (and lib/charset.ts for bytes to text).
import iconv from 'iconv-lite'
import { coversUnicode, normalizeCharset } from './charset.js'

// ---------------------------------------------------------------------------------------------------
// Markup: escaped text and the declaration

// Characters that need work when writing: markup, CR (XML parsers turn a raw CR into LF), and
// everything XML 1.0 cannot carry (C0 controls, surrogates to be checked for pairing, U+FFFE/FFFF).
// The common case, a string with none of them, is returned as it is.
// eslint-disable-next-line no-control-regex
const NEEDS_WORK_TEXT = /[&<>"\r\u0000-\u0008\u000B\u000C\u000E-\u001F\uD800-\uDFFF\uFFFE\uFFFF]/
// eslint-disable-next-line no-control-regex
const NEEDS_WORK_ATTR = /[&<>"\r\n\t\u0000-\u0008\u000B\u000C\u000E-\u001F\uD800-\uDFFF\uFFFE\uFFFF]/

/**
 * Escapes text for element content (`attribute` false) or a double-quoted attribute value (true; tab and
 * LF become character references so that attribute-value normalisation keeps them). Throws a TypeError
 * for characters XML 1.0 cannot carry at all.
 */
export function escapeXml (text: string, attribute = false): string {
  if (!(attribute ? NEEDS_WORK_ATTR : NEEDS_WORK_TEXT).test(text)) return text
  let out = ''
  let last = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    let replacement: string
    if (c === 38) replacement = '&amp;'
    else if (c === 60) replacement = '&lt;'
    else if (c === 62) replacement = '&gt;'
    else if (c === 34) replacement = '&quot;'
    else if (c === 13) replacement = '&#13;'
    else if (c === 10) {
      if (!attribute) continue
      replacement = '&#10;'
    } else if (c === 9) {
      if (!attribute) continue
      replacement = '&#9;'
    } else if (c < 0x20 || c === 0xFFFE || c === 0xFFFF) {
      throw new TypeError(`${codePointName(c)} at index ${i} cannot be represented in XML 1.0`)
    } else if (c >= 0xD800 && c <= 0xDBFF) {
      const next = text.charCodeAt(i + 1)
      if (next >= 0xDC00 && next <= 0xDFFF) {
        i++
        continue
      }
      throw new TypeError(`lone surrogate ${codePointName(c)} at index ${i} cannot be represented in XML`)
    } else if (c >= 0xDC00 && c <= 0xDFFF) {
      throw new TypeError(`lone surrogate ${codePointName(c)} at index ${i} cannot be represented in XML`)
    } else {
      continue
    }
    out += text.slice(last, i) + replacement
    last = i + 1
  }
  return last === 0 ? text : out + text.slice(last)
}

const ENCODING_LABEL = /^[A-Za-z][A-Za-z0-9._-]*$/

/** `<?xml version="1.0"?>`, or with `encoding="…"` when a charset label is given. */
export function xmlDeclaration (encoding: string | undefined): string {
  if (encoding === undefined) return '<?xml version="1.0"?>'
  if (!ENCODING_LABEL.test(encoding)) throw new TypeError(`invalid XML encoding label ${JSON.stringify(encoding)}`)
  return `<?xml version="1.0" encoding="${encoding}"?>`
}

function codePointName (cp: number): string {
  return `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`
}

// ---------------------------------------------------------------------------------------------------
// Text to bytes

/**
 * `text` in `charset` (any label normalizeCharset accepts) as iconv-lite writes it, with "?" for what
 * the charset lacks: for text that is not markup. A document goes through encodeXml, which loses
 * nothing. A TypeError for an unknown charset.
 */
export function encodeText (text: string, charset: string): Buffer {
  const normalized = normalizeCharset(charset)
  if (normalized === undefined) throw new TypeError(`unknown charset ${JSON.stringify(charset)}`)
  return normalized === 'utf-8' ? Buffer.from(text, 'utf8') : iconv.encode(text, normalized)
}

/** A character that `charset` cannot write at a place where XML allows no character reference. */
export class CharsetEncodeError extends TypeError {
  override readonly name = 'CharsetEncodeError'
  readonly charset: string
  readonly codePoint: number

  constructor (codePoint: number, charset: string, where: string) {
    super(`${codePointName(codePoint)} (${String.fromCodePoint(codePoint)}) cannot be written in ${charset.toUpperCase()} inside ${where}, where XML allows no character reference`)
    this.charset = charset
    this.codePoint = codePoint
  }
}

/**
 * Per charset and Unicode plane, what each code point does when encoded alone: 0 not known yet, 1 it
 * decodes back to itself, 2 it does not (iconv-lite wrote "?" or, for a few, other characters). Filled
 * as characters are first seen, so that a document costs a table look-up per character and one encode.
 */
interface Repertoire { asciiSafe: boolean, planes: Array<Uint8Array | undefined> }
const repertoires = new Map<string, Repertoire>()
// What the XML writers put between text and values; a charset that cannot write these cannot carry XML.
const MARKUP = '\t\n\r <>&;#"\'=/?!-[]:._'

function repertoireOf (charset: string): Repertoire {
  let r = repertoires.get(charset)
  if (r === undefined) {
    const roundTrips = (text: string): boolean => iconv.decode(iconv.encode(text, charset), charset, { stripBOM: false }) === text
    if (!roundTrips(MARKUP)) throw new TypeError(`${charset.toUpperCase()} cannot write XML markup`)
    let ascii = ''
    for (let c = 0x20; c < 0x7F; c++) ascii += String.fromCharCode(c)
    // A few legacy charsets (ISO646-JP, VISCII, …) redefine some ASCII characters: then those are checked too.
    r = { asciiSafe: roundTrips(ascii), planes: [] }
    repertoires.set(charset, r)
  }
  return r
}

function encodable (r: Repertoire, cp: number, charset: string): boolean {
  // iconv-lite "encodes" U+FFFD as a byte its table leaves undefined (windows-1252 0x9D, …).
  if (cp === 0xFFFD) return false
  const plane = cp >> 16
  const table = r.planes[plane] ??= new Uint8Array(0x10000)
  let known = table[cp & 0xFFFF] as number
  if (known === 0) {
    const ch = String.fromCodePoint(cp)
    known = iconv.decode(iconv.encode(ch, charset), charset, { stripBOM: false }) === ch ? 1 : 2
    table[cp & 0xFFFF] = known
  }
  return known === 1
}

const NON_ASCII = /[^\x00-\x7F]/ // eslint-disable-line no-control-regex

/**
 * Like encodeText, for an XML document: a character the charset cannot represent is written as a
 * character reference (`&#x1F600;`) instead of iconv-lite's "?", so nothing is lost. A reference is
 * only allowed in text and attribute values: such a character anywhere else (an element or attribute
 * name, a comment, a CDATA section, a processing instruction, after a DOCTYPE) throws
 * CharsetEncodeError, as does a lone surrogate. Meant for what lib/xmlrpc-encode.ts and lib/xml.ts write
 * (well-formed markup, text escaped); UTF-8, GB18030 and the other UTFs are encoded as they are.
 */
export function encodeXml (xml: string, charset: string): Buffer {
  const normalized = normalizeCharset(charset)
  if (normalized === undefined) throw new TypeError(`unknown charset ${JSON.stringify(charset)}`)
  if (normalized === 'utf-8') return Buffer.from(xml, 'utf8')
  if (coversUnicode(normalized)) {
    // iconv-lite writes U+E5E5 (private use) in GB18030 as bytes it reads back as U+F5F9: the one
    // character of that charset that takes a reference.
    if (normalized === 'gb18030' && xml.includes('\uE5E5')) return iconv.encode(withReferences(xml, repertoireOf(normalized), normalized), normalized)
    return iconv.encode(xml, normalized)
  }
  const r = repertoireOf(normalized)
  const from = r.asciiSafe ? xml.search(NON_ASCII) : 0
  if (from === -1 || firstUnencodable(xml, from, r, normalized) === -1) return iconv.encode(xml, normalized)
  return iconv.encode(withReferences(xml, r, normalized), normalized)
}

function firstUnencodable (xml: string, from: number, r: Repertoire, charset: string): number {
  for (let i = from; i < xml.length; i++) {
    const c = xml.charCodeAt(i)
    if (c < 0x80 && r.asciiSafe) continue
    const cp = xml.codePointAt(i) as number
    if (!encodable(r, cp, charset)) return i
    if (cp > 0xFFFF) i++
  }
  return -1
}

// Where withReferences is in the document. Only TEXT and VALUE may hold a character reference.
const TEXT = 0
const TAG = 1 // inside <name …> or </name>, outside quotes
const VALUE = 2 // inside a quoted attribute value
const REFERENCE = 3 // between & and ;
const OPAQUE = 4 // a comment, CDATA section, processing instruction or what follows a DOCTYPE

const OPAQUE_START: ReadonlyArray<[string, string, string]> = [
  ['<!--', '-->', 'a comment'],
  ['<![CDATA[', ']]>', 'a CDATA section'],
  ['<?', '?>', 'a processing instruction'],
  // A DOCTYPE's internal subset has its own syntax; our writers never write one.
  ['<!', '', 'a DOCTYPE or markup declaration']
]

function withReferences (xml: string, r: Repertoire, charset: string): string {
  let out = ''
  let copied = 0 // xml before this index is in `out`
  let state = TEXT
  let resume = TEXT // where a reference returns to
  let quote = 0
  let opaqueEnd = -1
  let opaqueEndLength = 0
  let opaqueWhat = ''
  for (let i = 0; i < xml.length; i++) {
    const c = xml.charCodeAt(i)
    if (state === OPAQUE && i === opaqueEnd) {
      i += opaqueEndLength - 1
      state = TEXT
      continue
    }
    if (c < 0x80) {
      if (state === TEXT && c === 0x3C) { // <
        state = TAG
        for (const [start, end, what] of OPAQUE_START) {
          if (!xml.startsWith(start, i)) continue
          const at = end === '' ? -1 : xml.indexOf(end, i + start.length)
          state = OPAQUE
          opaqueEnd = at === -1 ? xml.length : at
          opaqueEndLength = end.length
          opaqueWhat = what
          break
        }
      } else if ((state === TEXT || state === VALUE) && c === 0x26) { // &
        resume = state
        state = REFERENCE
      } else if (state === REFERENCE && c === 0x3B) { // ;
        state = resume
      } else if (state === TAG && (c === 0x22 || c === 0x27)) {
        state = VALUE
        quote = c
      } else if (state === VALUE && c === quote) {
        state = TAG
      } else if (state === TAG && c === 0x3E) { // >
        state = TEXT
      }
      if (r.asciiSafe) continue
    }
    const cp = xml.codePointAt(i) as number
    const width = cp > 0xFFFF ? 2 : 1
    if (cp >= 0xD800 && cp <= 0xDFFF) throw new TypeError(`lone surrogate ${codePointName(cp)} at index ${i} cannot be written in XML`)
    if (!encodable(r, cp, charset)) {
      if (state !== TEXT && state !== VALUE) {
        throw new CharsetEncodeError(cp, charset, state === TAG ? 'an element or attribute name' : state === REFERENCE ? 'an entity reference' : opaqueWhat)
      }
      out += xml.slice(copied, i) + '&#x' + cp.toString(16).toUpperCase() + ';'
      copied = i + width
    }
    i += width - 1
  }
  return copied === 0 ? xml : out + xml.slice(copied)
}
