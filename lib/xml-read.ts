// The reading side of XML: from untrusted text to the ordered tree that the two decoders walk
// (lib/xmlrpc-decode.ts for XML-RPC, lib/xml.ts's xmlToJson for the generic mapping), with the
// defences both need: limits, DOCTYPE refusal, well-formedness, depth, entity decoding. What the
// gateway writes is lib/xml-write.ts's.
//
// fast-xml-parser 5 is fast, but it is a lenient tokenizer rather than an XML processor, so this file
// makes up for what it does not do:
//  - it does not check well-formedness while parsing (`<a><b>x</a>` parses), so XMLValidator runs first;
//  - XMLValidator itself accepts a few broken documents (`<a/><b/>`, `<a/>junk`, `<a><!foo></a>`,
//    bare `&` or `<` inside attribute values, undeclared `&foo;`): parseDocument and decodeEntities
//    reject those;
//  - with default options it trims text, turns "007" into 7 and ignores numeric character
//    references (`&#13;` stays literal unless `htmlEntities` is on), so entity processing is switched
//    off and done here, for the five predefined entities and character references only;
//  - it reads a DOCTYPE and expands its entities (within limits): any DOCTYPE/ENTITY is refused before
//    the parser sees the text.
import { XMLParser, XMLValidator } from 'fast-xml-parser'

export type XmlErrorReason = 'malformed' | 'hostile' | 'too-large' | 'too-deep' | 'not-xmlrpc'

export interface DecodeLimits {
  /** Longest accepted input, in string length (UTF-16 code units). Default 10 MiB. */
  maxBytes?: number
  /** Deepest accepted nesting: array/struct levels for XML-RPC, element levels for plain XML. Default 64. */
  maxDepth?: number
}

export const DEFAULT_MAX_BYTES = 10 * 1024 * 1024
export const DEFAULT_MAX_DEPTH = 64

/** Base class of XmlRpcParseError and XmlParseError: catch this one to handle both. */
export class XmlInputError extends Error {
  readonly reason: XmlErrorReason

  constructor (reason: XmlErrorReason, message: string, options?: ErrorOptions) {
    super(message, options)
    this.reason = reason
  }
}

export type XmlInputErrorClass = new (reason: XmlErrorReason, message: string, options?: ErrorOptions) => XmlInputError

/**
 * One node of fast-xml-parser's `preserveOrder` output: `{ "#text": "…" }`, `{ "#cdata": [{ "#text": "…" }] }`
 * or `{ tagName: Entry[], ":@"?: { "@attr": "…" } }` (the tag name is the first key).
 */
export type Entry = Record<string, unknown>

export interface XmlElement {
  name: string
  children: Entry[]
  attrs: Record<string, string> | undefined
}

export const TEXT = '#text'
export const CDATA = '#cdata'
export const ATTRS = ':@'

// fast-xml-parser throws on elements named like these (prototype-pollution guard) and renames
// `__proto__` to `#__proto__`; a leading space (never part of a parsed name) carries them through.
const RESERVED_NAMES = new Set(['__proto__', 'constructor', 'prototype'])
export const RESERVED_MARK = ' '

function markReservedName (name: string): string {
  return (name.length === 9 || name.length === 11) && RESERVED_NAMES.has(name) ? RESERVED_MARK + name : name
}

export function limitsOf (limits: DecodeLimits | undefined): { maxBytes: number, maxDepth: number } {
  const maxBytes = limits?.maxBytes
  const maxDepth = limits?.maxDepth
  return {
    maxBytes: typeof maxBytes === 'number' && maxBytes >= 0 ? maxBytes : DEFAULT_MAX_BYTES,
    maxDepth: typeof maxDepth === 'number' && maxDepth >= 0 ? Math.floor(maxDepth) : DEFAULT_MAX_DEPTH
  }
}

// A parser is reusable (XMLParser.parse builds its per-document state itself), so one is kept per
// configuration instead of one per call.
const parsers = new Map<string, XMLParser>()

/** `attributes`: the generic mapping (attributes kept, any element name); otherwise XML-RPC's needs. */
function parserFor (attributes: boolean, maxElementDepth: number): XMLParser {
  const key = `${attributes ? 'a' : '-'}${maxElementDepth}`
  let parser = parsers.get(key)
  if (parser === undefined) {
    parser = new XMLParser({
      preserveOrder: true, // document order, no merging of repeated elements, text runs kept apart
      trimValues: false,
      parseTagValue: false,
      parseAttributeValue: false,
      processEntities: false, // decodeEntities does it, correctly and without DOCTYPE entities
      htmlEntities: false,
      ignoreAttributes: !attributes,
      attributeNamePrefix: '@',
      cdataPropName: CDATA, // CDATA must not be entity-decoded, so it has to stay recognisable
      ignoreDeclaration: true,
      ignorePiTags: true,
      commentPropName: false,
      removeNSPrefix: false,
      jPath: false, // otherwise the parser builds a path string for every element
      maxNestedTags: maxElementDepth,
      // XML-RPC has no use for such names: there the parser's refusal is the right answer (malformed).
      transformTagName: attributes ? markReservedName : false,
      // The default renames elements such as <toString> to "__toString"; our trees never call methods
      // on these objects, and xml.ts builds its own objects, so names pass through unchanged.
      onDangerousProperty: (name: string) => name
    })
    if (parsers.size > 16) parsers.clear()
    parsers.set(key, parser)
  }
  return parser
}

const HOSTILE = /<!(?:DOCTYPE|ENTITY)/i

/**
 * Size limit, DOCTYPE/ENTITY refusal, well-formedness, depth limit and parse. Returns the root element.
 * `maxElementDepth` bounds element nesting inside the parser (which is iterative), so nothing deeper can
 * reach the recursive walks of the callers.
 */
export function parseDocument (
  input: unknown,
  maxBytes: number,
  maxElementDepth: number,
  attributes: boolean,
  Err: XmlInputErrorClass
): XmlElement {
  if (typeof input !== 'string') throw new Err('malformed', `expected an XML string, got ${typeof input}`)
  if (input.length > maxBytes) throw new Err('too-large', `XML document of ${input.length} characters exceeds the limit of ${maxBytes}`)
  const xml = input.charCodeAt(0) === 0xFEFF ? input.slice(1) : input
  if (HOSTILE.test(xml)) throw new Err('hostile', 'XML with a DOCTYPE or ENTITY declaration is refused')
  checkDeclarations(xml, Err)
  const valid = XMLValidator.validate(xml)
  if (valid !== true) {
    // (the validator can put every unclosed tag name in its message: keep ours short)
    const reason = valid.err.msg.length > 200 ? valid.err.msg.slice(0, 200) + '…' : valid.err.msg
    throw new Err('malformed', `XML is not well-formed: ${reason} (line ${valid.err.line}, column ${valid.err.col})`)
  }
  let top: Entry[]
  try {
    top = parserFor(attributes, maxElementDepth).parse(xml) as Entry[]
  } catch (err) {
    if (err instanceof Error && /nested tags/i.test(err.message)) {
      throw new Err('too-deep', `XML nests elements deeper than ${maxElementDepth} levels`, { cause: err })
    }
    throw new Err('malformed', `XML could not be parsed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
  let root: XmlElement | undefined
  for (const entry of top) {
    const name = nameOf(entry)
    if (name === TEXT || name === CDATA) continue // the parser drops top-level text; be sure
    if (root !== undefined) throw new Err('malformed', 'XML has more than one root element')
    root = { name, children: entry[name] as Entry[], attrs: entry[ATTRS] as Record<string, string> | undefined }
  }
  if (root === undefined) throw new Err('malformed', 'XML has no root element')
  checkEpilogue(xml, Err)
  return root
}

/**
 * An entry's element name, or TEXT/CDATA. A name never holds whitespace (the parser ends it at the
 * first `\s`), so there is nothing to trim; only the generic mapping's RESERVED_MARK starts one.
 */
export function nameOf (entry: Entry): string {
  // eslint-disable-next-line no-unreachable-loop -- the first key is the name; no array allocated per node
  for (const key in entry) return key
  return ''
}

// Outside comments and CDATA sections, `<!` can only start a declaration, which a document without a
// DOCTYPE may not contain. The validator lets `<!foo>` through and the parser makes an element of it.
function checkDeclarations (xml: string, Err: XmlInputErrorClass): void {
  let i = xml.indexOf('<!')
  while (i !== -1) {
    let end: number
    if (xml.startsWith('--', i + 2)) {
      end = xml.indexOf('-->', i + 4)
      if (end === -1) throw new Err('malformed', 'XML comment is not closed')
    } else if (xml.startsWith('[CDATA[', i + 2)) {
      end = xml.indexOf(']]>', i + 9)
      if (end === -1) throw new Err('malformed', 'CDATA section is not closed')
    } else {
      throw new Err('malformed', 'unexpected markup declaration `<!` in XML')
    }
    i = xml.indexOf('<!', end + 3)
  }
}

// XMLValidator stops looking after a self-closing root element: `<a/><b/>` and `<a/>junk` pass it.
function checkEpilogue (xml: string, Err: XmlInputErrorClass): void {
  let i = skipMisc(xml, 0)
  if (i >= xml.length || xml.charCodeAt(i) !== 60 /* < */) return // the validator has seen to that
  let quote = 0
  for (i++; i < xml.length; i++) {
    const c = xml.charCodeAt(i)
    if (quote !== 0) {
      if (c === quote) quote = 0
    } else if (c === 34 || c === 39) {
      quote = c
    } else if (c === 62 /* > */) {
      if (xml.charCodeAt(i - 1) !== 47 /* / */) return // not self-closing: the validator checks the end
      if (skipMisc(xml, i + 1) < xml.length) throw new Err('malformed', 'XML has content after the root element')
      return
    }
  }
}

/** Skips whitespace, comments and processing instructions; returns the index of what follows. */
function skipMisc (xml: string, i: number): number {
  for (;;) {
    while (i < xml.length && isXmlSpace(xml.charCodeAt(i))) i++
    let end: number
    if (xml.startsWith('<?', i)) {
      end = xml.indexOf('?>', i + 2)
      if (end === -1) return i
      i = end + 2
    } else if (xml.startsWith('<!--', i)) {
      end = xml.indexOf('-->', i + 4)
      if (end === -1) return i
      i = end + 3
    } else {
      return i
    }
  }
}

function isXmlSpace (c: number): boolean {
  return c === 32 || c === 10 || c === 9 || c === 13
}

const WHITESPACE_ONLY = /^[ \t\r\n]*$/

export function isWhitespace (text: string): boolean {
  return WHITESPACE_ONLY.test(text)
}

const REFERENCE = /&(?:#x([0-9a-fA-F]+);|#([0-9]+);|([A-Za-z_:][\w.:-]*);)?/g

function isXmlChar (cp: number): boolean {
  return cp === 0x9 || cp === 0xA || cp === 0xD ||
    (cp >= 0x20 && cp <= 0xD7FF) || (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF)
}

/**
 * Decodes the five predefined entities and character references (`&#13;`, `&#x1F600;`). Anything else
 * that starts with `&` (an undeclared entity, a bare ampersand, a reference to a character XML forbids)
 * makes the document malformed.
 */
export function decodeEntities (text: string, Err: XmlInputErrorClass): string {
  if (text.indexOf('&') === -1) return text
  return text.replace(REFERENCE, (match: string, hex?: string, dec?: string, name?: string) => {
    if (hex !== undefined || dec !== undefined) {
      const cp = hex !== undefined ? parseInt(hex, 16) : parseInt(dec as string, 10)
      if (!isXmlChar(cp)) throw new Err('malformed', `character reference ${match} names a character XML does not allow`)
      return String.fromCodePoint(cp)
    }
    switch (name) {
      case 'lt': return '<'
      case 'gt': return '>'
      case 'amp': return '&'
      case 'quot': return '"'
      case 'apos': return '\''
      case undefined: throw new Err('malformed', 'bare `&` in XML text')
      default: throw new Err('malformed', `undeclared entity &${name};`)
    }
  })
}

/** Attribute values: the parser does not check them, so `<` and stray `&` are caught here. */
export function decodeAttribute (value: string, Err: XmlInputErrorClass): string {
  if (value.indexOf('<') !== -1) throw new Err('malformed', '`<` inside an XML attribute value')
  return decodeEntities(value, Err)
}

/** Own data property, even for `__proto__`, without touching any prototype. */
export function setOwn<T> (target: Record<string, T>, key: string, value: T): void {
  if (key === '__proto__') {
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
  } else {
    target[key] = value
  }
}
