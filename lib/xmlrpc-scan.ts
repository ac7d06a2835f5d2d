// The fast path of decodeResponse, and only that: a one-pass scanner for the common shape of a
// methodResponse, which builds no tree. The gateway decodes one answer per call, and the tree path
// (validator, parser, walk) cost about a quarter of its CPU per call (docs/BENCHMARKS.md).
//
// It is optional. It answers only what lib/xmlrpc-decode.ts, the authority, would answer, and steps
// aside on everything else, errors included; test/lib/xmlrpc-scan.test.ts, a differential test on the
// golden files and on generated and mutated documents, keeps it so. Deleting this file and its two
// lines in lib/xmlrpc.ts would change no answer, only what one costs.
import { decodeEntities, isWhitespace, setOwn } from './xml-read.js'
import { XmlRpcParseError, faultOf, scalarOf, type JsonValue, type MethodResponse } from './xmlrpc-decode.js'

/**
 * The answer in `xml`, or `undefined` when the document is outside the subset this reads: elements
 * without attributes (but `xmlns` declarations on the root) and with at most a simple prefix on type
 * names (Apache's `ex:i8`, `ex:nil`), `[ \t\n]` between them, entity and character references, an
 * optional XML declaration in its standard form, LF or CRLF line ends; no comments, CDATA, PIs or
 * DOCTYPE. Every error is `undefined` too: the tree path then decodes the document or says what is
 * wrong with it.
 */
export function scanResponse (xml: string, maxDepth: number): MethodResponse | undefined {
  if (OUTSIDE_SCAN.test(xml)) return undefined
  // Line ends as XML §2.11 and fast-xml-parser read them (servers on Windows send CRLF); a CR
  // written as `&#13;` is decoded after this, so it stays a CR, as in the tree path.
  const text = xml.indexOf('\r') === -1 ? xml : xml.replace(/\r\n?/g, '\n')
  try {
    return new Scanner(text, maxDepth).response()
  } catch {
    return undefined
  }
}

// C0 controls other than tab, LF and CR, the non-characters, and markup the scanner leaves to the
// parser: comments, CDATA, declarations, `]]>`.
// eslint-disable-next-line no-control-regex
const OUTSIDE_SCAN = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|<!|\]\]>/
const DECLARATION = /<\?xml[ \t\n]+version[ \t\n]*=[ \t\n]*(?:"1\.[0-9]+"|'1\.[0-9]+')(?:[ \t\n]+encoding[ \t\n]*=[ \t\n]*(?:"[A-Za-z][A-Za-z0-9._-]*"|'[A-Za-z][A-Za-z0-9._-]*'))?(?:[ \t\n]+standalone[ \t\n]*=[ \t\n]*(?:"(?:yes|no)"|'(?:yes|no)'))?[ \t\n]*\?>/y

const XMLNS = /(xmlns(?::[A-Za-z][A-Za-z0-9._-]*)?)[ \t\n]*=[ \t\n]*(?:"[^"<&]*"|'[^'<&]*')/y
const PREFIXED_TYPE = /^[A-Za-z][A-Za-z0-9]*:[A-Za-z][A-Za-z0-9.]*$/

/** Thrown inside the scanner when the document leaves the subset; never escapes scanResponse. */
const OUTSIDE = new Error('outside the scanned subset')

class Scanner {
  private i = 0

  constructor (private readonly s: string, private readonly maxDepth: number) {}

  response (): MethodResponse {
    const s = this.s
    if (s.charCodeAt(0) === 0xFEFF) this.i = 1
    if (s.startsWith('<?', this.i)) {
      DECLARATION.lastIndex = this.i
      if (!DECLARATION.test(s)) throw OUTSIDE
      this.i = DECLARATION.lastIndex
    }
    this.blank()
    this.rootTag()
    this.blank()
    let result: MethodResponse
    if (this.eat('<params/>')) {
      result = { fault: false, value: null }
    } else if (this.eat('<params>')) {
      this.blank()
      if (this.eat('</params>')) {
        result = { fault: false, value: null }
      } else {
        this.expect('<param>')
        this.blank()
        const value = this.value(0)
        this.blank()
        this.expect('</param>')
        this.blank()
        this.expect('</params>') // a second <param>: left to the tree path
        result = { fault: false, value }
      }
    } else {
      this.expect('<fault>')
      this.blank()
      result = faultOf(this.value(0))
      this.blank()
      this.expect('</fault>')
    }
    this.blank()
    this.expect('</methodResponse>')
    this.blank()
    if (this.i !== s.length) throw OUTSIDE
    return result
  }

  /** `<methodResponse>`, with namespace declarations as Apache XML-RPC sends (`xmlns:ex="…"`). */
  private rootTag (): void {
    this.expect('<methodResponse')
    const declared: string[] = []
    for (;;) {
      const before = this.i
      this.blank()
      if (this.eat('>')) return
      if (this.i === before) throw OUTSIDE
      XMLNS.lastIndex = this.i
      const match = XMLNS.exec(this.s)
      if (match === null || declared.includes(match[1] as string)) throw OUTSIDE // a repeated attribute is malformed
      declared.push(match[1] as string)
      this.i = XMLNS.lastIndex
    }
  }

  /** At `<value>` or `<value/>`; `level` counts the enclosing arrays and structs. */
  private value (level: number): JsonValue {
    if (this.eat('<value/>')) return ''
    this.expect('<value>')
    const raw = this.text()
    if (this.eat('</value>')) return decodeEntities(raw, XmlRpcParseError) // untyped: a string, as sent
    if (!isWhitespace(raw)) throw OUTSIDE
    const s = this.s
    const start = this.i + 1
    let end = start
    for (let c = s.charCodeAt(end); (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 58) || c === 46; c = s.charCodeAt(++end));
    const type = s.slice(start, end)
    // ex:i8, ex:nil (Apache's extensions): typed by the local name, as the tree path does
    let local = type
    const colon = type.indexOf(':')
    if (colon !== -1) {
      if (!PREFIXED_TYPE.test(type)) throw OUTSIDE
      local = type.slice(colon + 1)
    }
    let value: JsonValue
    if (s.startsWith('/>', end)) {
      this.i = end + 2
      if (local === 'struct' || local === 'array') {
        if (level >= this.maxDepth) throw OUTSIDE
        value = local === 'struct' ? {} : []
      } else {
        value = local === 'nil' ? null : scalarOf(local, type, '', false)
      }
    } else if (s.charCodeAt(end) === 62 /* > */) {
      this.i = end + 1
      if (local === 'struct' || local === 'array') {
        if (level >= this.maxDepth) throw OUTSIDE
        value = local === 'struct' ? this.struct(level + 1) : this.array(level + 1)
        this.blank()
        this.expectClose(type)
      } else {
        // Decoded even for nil, whose text is ignored: a broken reference makes the document malformed.
        const text = decodeEntities(this.text(), XmlRpcParseError)
        this.expectClose(type)
        value = local === 'nil' ? null : scalarOf(local, type, text, false)
      }
    } else {
      throw OUTSIDE
    }
    this.blank()
    this.expect('</value>')
    return value
  }

  /** The members, up to (not including) the closing tag. */
  private struct (level: number): JsonValue {
    const struct: { [key: string]: JsonValue } = {}
    for (;;) {
      this.blank()
      if (this.s.startsWith('</', this.i)) return struct
      this.expect('<member>')
      this.blank()
      this.expect('<name>')
      const name = decodeEntities(this.text(), XmlRpcParseError)
      this.expect('</name>')
      this.blank()
      const value = this.value(level)
      this.blank()
      this.expect('</member>')
      setOwn(struct, name, value)
    }
  }

  /** `<data>…</data>`, `<data/>` or nothing, up to (not including) the closing tag. */
  private array (level: number): JsonValue[] {
    const array: JsonValue[] = []
    this.blank()
    if (this.s.startsWith('</', this.i)) return array
    if (!this.eat('<data/>')) {
      this.expect('<data>')
      for (;;) {
        this.blank()
        if (this.eat('</data>')) break
        array.push(this.value(level))
      }
    }
    return array
  }

  /** The raw text up to the next `<`. */
  private text (): string {
    const end = this.s.indexOf('<', this.i)
    if (end === -1) throw OUTSIDE
    const text = this.s.slice(this.i, end)
    this.i = end
    return text
  }

  private blank (): void {
    const s = this.s
    let i = this.i
    for (let c = s.charCodeAt(i); c === 32 || c === 10 || c === 9; c = s.charCodeAt(++i));
    this.i = i
  }

  private eat (token: string): boolean {
    if (!this.s.startsWith(token, this.i)) return false
    this.i += token.length
    return true
  }

  private expect (token: string): void {
    if (!this.s.startsWith(token, this.i)) throw OUTSIDE
    this.i += token.length
  }

  private expectClose (type: string): void {
    const s = this.s
    const i = this.i
    if (s.charCodeAt(i) !== 60 || s.charCodeAt(i + 1) !== 47 || !s.startsWith(type, i + 2) || s.charCodeAt(i + 2 + type.length) !== 62) throw OUTSIDE
    this.i = i + 3 + type.length
  }
}
