// The XML-RPC codec (CONTRACT §3, "JSON ⇄ XML-RPC mapping").
//
// Decoding uses fast-xml-parser (through lib/xml-guard.ts, which adds what the parser leaves out:
// well-formedness, DOCTYPE refusal, entity decoding, limits) in `preserveOrder` mode, whose ordered
// tree keeps text exactly and never merges or collapses elements; the walk below types it.
//
// Encoding is plain string building rather than fast-xml-parser's XMLBuilder: the output is a fixed
// grammar, the builder would need an intermediate object tree built for it on every call, and its
// escaping neither writes CR as `&#13;` nor refuses characters XML cannot carry, both of which the
// contract needs (escapeXml in lib/xml-guard.ts does them in one pass, none for plain strings).
import {
  CDATA, DEFAULT_MAX_DEPTH, TEXT, XmlInputError, decodeEntities, isWhitespace, limitsOf, nameOf, parseDocument, setOwn
} from './xml-read.js'
import type { DecodeLimits, Entry } from './xml-read.js'
import { escapeXml, xmlDeclaration } from './xml-write.js'

export type { DecodeLimits, XmlErrorReason } from './xml-read.js'

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

export type MethodResponse =
  | { fault: false, value: JsonValue }
  | { fault: true, faultCode: number, faultString: string }

/** Any input decodeResponse/decodeCall cannot accept: malformed, hostile, oversized, too deep or not XML-RPC. */
export class XmlRpcParseError extends XmlInputError {
  override readonly name = 'XmlRpcParseError'
}

// ---------------------------------------------------------------------------------------------------
// Encoding

interface EncodeOptions { encoding?: string }

const INT32_MIN = -(2 ** 31)
const INT32_MAX = 2 ** 31 - 1
const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n
// The array/struct levels decodeResponse accepts by default, and so what the gateway decodes: every
// value it sends can come back through its own decoder, and anything deeper (or cyclic) is refused
// before it is sent, not executed by the legacy server and then answered 502. (The decoder's element
// bound, 3 per level plus 8, is met by construction: a level is `<array><data><value>` or
// `<struct><member><value>`, around at most methodCall/params/param/value and one scalar element.)
const MAX_ENCODE_DEPTH = DEFAULT_MAX_DEPTH

/**
 * The params list counts as one level, as the JSON array the browser sent it in: a method that
 * answers with its params (an echo, a "get what I set") returns exactly that array, which must fit
 * the decoder too. So each param may nest one level less than a response value.
 */
export function encodeCall (method: string, params: readonly unknown[], opts?: EncodeOptions): string {
  if (typeof method !== 'string' || method.length === 0) throw new TypeError('XML-RPC method name must be a non-empty string')
  if (!Array.isArray(params)) throw new TypeError('XML-RPC params must be an array')
  let xml = xmlDeclaration(opts?.encoding) + '<methodCall><methodName>' + escapeXml(method) + '</methodName><params>'
  for (const param of params) xml += '<param>' + encodeValue(param, 1) + '</param>'
  return xml + '</params></methodCall>'
}

export function encodeResponse (value: unknown, opts?: EncodeOptions): string {
  return xmlDeclaration(opts?.encoding) + '<methodResponse><params><param>' + encodeValue(value, 0) +
    '</param></params></methodResponse>'
}

export function encodeFault (faultCode: number, faultString: string, opts?: EncodeOptions): string {
  if (!Number.isInteger(faultCode)) throw new TypeError(`XML-RPC faultCode must be an integer, got ${String(faultCode)}`)
  return xmlDeclaration(opts?.encoding) + '<methodResponse><fault><value><struct>' +
    '<member><name>faultCode</name>' + encodeNumber(faultCode) + '</member>' +
    '<member><name>faultString</name><value><string>' + escapeXml(String(faultString)) + '</string></value></member>' +
    '</struct></value></fault></methodResponse>'
}

function encodeValue (value: unknown, depth: number): string {
  switch (typeof value) {
    case 'string': return '<value><string>' + escapeXml(value) + '</string></value>'
    case 'number': return encodeNumber(value)
    case 'boolean': return value ? '<value><boolean>1</boolean></value>' : '<value><boolean>0</boolean></value>'
    case 'bigint':
      if (value < INT64_MIN || value > INT64_MAX) throw new TypeError(`${value} does not fit XML-RPC <i8>`)
      return '<value><i8>' + value.toString() + '</i8></value>'
    case 'object': break
    default: return '<value><nil/></value>' // undefined, functions, symbols: null, as JSON.stringify does in arrays
  }
  if (value === null) return '<value><nil/></value>'
  if (depth >= MAX_ENCODE_DEPTH) {
    throw new TypeError(`arrays and structs nested deeper than ${MAX_ENCODE_DEPTH} levels (a call's params list counting as one), or a cycle: more than the gateway decodes`)
  }
  if (Array.isArray(value)) {
    let xml = '<value><array><data>'
    for (const item of value) xml += encodeValue(item, depth + 1)
    return xml + '</data></array></value>'
  }
  const json = (value as { toJSON?: unknown }).toJSON
  if (typeof json === 'function') return encodeValue(json.call(value), depth + 1) // Date → ISO string, like JSON
  const keys = Object.keys(value)
  if (keys.length === 1) {
    const only = (value as Record<string, unknown>)[keys[0] as string]
    if (typeof only === 'string') {
      if (keys[0] === '$dateTime') return '<value><dateTime.iso8601>' + escapeXml(only) + '</dateTime.iso8601></value>'
      if (keys[0] === '$base64') return '<value><base64>' + escapeXml(only) + '</base64></value>'
    }
  }
  let xml = '<value><struct>'
  for (const key of keys) {
    const member = (value as Record<string, unknown>)[key]
    const type = typeof member
    if (type === 'undefined' || type === 'function' || type === 'symbol') continue // omitted, as JSON.stringify does
    xml += '<member><name>' + escapeXml(key) + '</name>' + encodeValue(member, depth + 1) + '</member>'
  }
  return xml + '</struct></value>'
}

function encodeNumber (n: number): string {
  if (!Number.isFinite(n)) throw new TypeError(`${n} cannot be sent in XML-RPC (nor in JSON)`)
  if (Number.isInteger(n)) {
    if (n >= INT32_MIN && n <= INT32_MAX) return '<value><int>' + (n === 0 ? '0' : String(n)) + '</int></value>'
    if (Number.isSafeInteger(n)) return '<value><i8>' + String(n) + '</i8></value>'
  }
  return '<value><double>' + positional(n) + '</double></value>'
}

/**
 * The shortest round-tripping digits of `n` (what String gives), but without an exponent: the
 * XML-RPC spec allows only decimal point notation, and strict servers hold to it.
 */
function positional (n: number): string {
  const s = String(n)
  const e = s.indexOf('e')
  if (e === -1) return s
  let mantissa = s.slice(0, e)
  const exponent = Number(s.slice(e + 1))
  let sign = ''
  if (mantissa.startsWith('-')) {
    sign = '-'
    mantissa = mantissa.slice(1)
  }
  const dot = mantissa.indexOf('.')
  const digits = dot === -1 ? mantissa : mantissa.slice(0, dot) + mantissa.slice(dot + 1)
  const point = (dot === -1 ? mantissa.length : dot) + exponent
  if (point <= 0) return sign + '0.' + '0'.repeat(-point) + digits
  if (point >= digits.length) return sign + digits + '0'.repeat(point - digits.length)
  return sign + digits.slice(0, point) + '.' + digits.slice(point)
}

// ---------------------------------------------------------------------------------------------------
// Decoding

interface Walk {
  maxDepth: number
  typed: boolean
}

export function decodeResponse (xml: string, limits?: DecodeLimits): MethodResponse {
  if (typeof xml === 'string') {
    const { maxBytes, maxDepth } = limitsOf(limits)
    if (xml.length <= maxBytes) {
      const scanned = scanResponse(xml, maxDepth)
      if (scanned !== undefined) return scanned
    }
  }
  return decodeResponseTree(xml, limits)
}

/** decodeResponse without its fast path: the reference the fast path is tested against. */
export function decodeResponseTree (xml: string, limits?: DecodeLimits): MethodResponse {
  return guarded(() => {
    const { children, name, walk } = open(xml, limits, false)
    if (name !== 'methodResponse') throw notXmlRpc(name, 'methodResponse')
    const [kind, body] = onlyElement(children, '<methodResponse>')
    if (kind === 'params') {
      const param = firstElement(body, 'param', '<params>')
      if (param === undefined) return { fault: false, value: null }
      return { fault: false, value: decodeValue(requireElement(param, 'value', '<param>'), 0, walk) }
    }
    if (kind === 'fault') return decodeFault(requireElement(body, 'value', '<fault>'), walk)
    throw malformed(`<methodResponse> contains <${kind}>, expected <params> or <fault>`)
  })
}

export function decodeCall (xml: string, limits?: DecodeLimits & { typed?: boolean }): { method: string, params: JsonValue[] } {
  return guarded(() => {
    const { children, name, walk } = open(xml, limits, limits?.typed === true)
    if (name !== 'methodCall') throw notXmlRpc(name, 'methodCall')
    let method: string | undefined
    let params: JsonValue[] = []
    for (const entry of children) {
      const child = nameOf(entry)
      if (child === TEXT || child === CDATA) {
        checkBlank(entry, '<methodCall>')
      } else if (child === 'methodName' && method === undefined) {
        method = textOf(entry[child] as Entry[], '<methodName>').trim()
      } else if (child === 'params') {
        params = []
        for (const param of elements(entry[child] as Entry[], 'param', '<params>')) {
          params.push(decodeValue(requireElement(param, 'value', '<param>'), 0, walk))
        }
      } else {
        throw malformed(`unexpected <${child}> in <methodCall>`)
      }
    }
    if (method === undefined || method === '') throw malformed('<methodCall> without a <methodName>')
    return { method, params }
  })
}

function open (xml: string, limits: DecodeLimits | undefined, typed: boolean): { name: string, children: Entry[], walk: Walk } {
  const { maxBytes, maxDepth } = limitsOf(limits)
  // Each array/struct level costs 3 elements (<array><data><value>, <struct><member><value>) on top of
  // methodResponse/params/param/value and a scalar type: nesting past that is refused by the parser
  // itself, before the recursive walk, which then counts array/struct levels exactly.
  const root = parseDocument(xml, maxBytes, 3 * maxDepth + 8, false, XmlRpcParseError)
  return { name: root.name, children: root.children, walk: { maxDepth, typed } }
}

// Whatever the input, decoding throws XmlRpcParseError and nothing else.
function guarded<T> (decode: () => T): T {
  try {
    return decode()
  } catch (err) {
    if (err instanceof XmlRpcParseError) throw err
    if (err instanceof RangeError) throw new XmlRpcParseError('too-deep', 'XML-RPC document nested too deeply', { cause: err })
    throw new XmlRpcParseError('malformed', `invalid XML-RPC: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

function malformed (message: string): XmlRpcParseError {
  return new XmlRpcParseError('malformed', message)
}

function notXmlRpc (name: string, expected: string): XmlRpcParseError {
  return new XmlRpcParseError('not-xmlrpc', `the document's root element is <${name.trim()}>, expected <${expected}>`)
}

function decodeFault (value: Entry[], walk: Walk): MethodResponse {
  return faultOf(decodeValue(value, 0, walk))
}

function faultOf (fault: JsonValue): MethodResponse {
  if (fault === null || typeof fault !== 'object' || Array.isArray(fault)) throw malformed('<fault> value is not a <struct>')
  const code = Object.hasOwn(fault, 'faultCode') ? fault.faultCode : undefined
  const text = Object.hasOwn(fault, 'faultString') ? fault.faultString : undefined
  // Sloppy servers send the code as a string ("-32600"): take it when numeric, else 0.
  let faultCode = 0
  if (typeof code === 'number') faultCode = code
  else if (typeof code === 'string' && code.trim() !== '' && Number.isFinite(Number(code))) faultCode = Number(code)
  let faultString: string
  if (typeof text === 'string') faultString = text
  else if (text === undefined || text === null) faultString = ''
  else if (typeof text === 'object') faultString = JSON.stringify(text)
  else faultString = String(text)
  return { fault: true, faultCode, faultString }
}

const INTEGER = /^[+-]?[0-9]+$/
const DOUBLE = /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/
const XML_SPACE = /^[ \t\r\n]+|[ \t\r\n]+$/g
const ANY_SPACE = /\s+/g

/** `children` are the entries inside a <value>; `level` is the number of enclosing arrays/structs. */
function decodeValue (children: Entry[], level: number, walk: Walk): JsonValue {
  let typeEntry: Entry | undefined
  let type = ''
  let text = ''
  let textIsBlank = true
  for (const entry of children) {
    const name = nameOf(entry)
    if (name === TEXT) {
      const raw = entry[TEXT] as string
      if (textIsBlank && !isWhitespace(raw)) textIsBlank = false
      text += raw.indexOf('&') === -1 ? raw : decodeEntities(raw, XmlRpcParseError)
    } else if (name === CDATA) {
      const raw = cdataText(entry)
      if (raw !== '') textIsBlank = false
      text += raw
    } else {
      if (typeEntry !== undefined) throw malformed(`<value> holds both <${type}> and <${name}>`)
      typeEntry = entry
      type = name
    }
  }
  // An untyped <value> is a string, exactly as sent.
  if (typeEntry === undefined) return text
  if (!textIsBlank) throw malformed(`<value> holds text beside <${type}>`)
  const content = typeEntry[type] as Entry[]
  const colon = type.indexOf(':')
  const local = colon === -1 ? type : type.slice(colon + 1) // ex:i8, ex:nil and other prefixed extensions
  switch (local) {
    case 'struct':
      if (level >= walk.maxDepth) throw tooDeep(walk)
      return decodeStruct(content, level + 1, walk)
    case 'array':
      if (level >= walk.maxDepth) throw tooDeep(walk)
      return decodeArray(content, level + 1, walk)
    case 'nil':
      return null
    default:
      return scalarOf(local, type, textOf(content, `<${type}>`), walk.typed)
  }
}

/**
 * A scalar's JSON value from the text of its element (entities decoded, never trimmed), shared by
 * the tree walk and scanResponse. `local` is the type without a namespace prefix.
 */
function scalarOf (local: string, type: string, text: string, typed: boolean): JsonValue {
  switch (local) {
    case 'string':
      return text
    case 'int':
    case 'i4':
    case 'i8':
    case 'i2':
    case 'i1':
      return decodeInteger(text.replace(XML_SPACE, ''), type)
    case 'double':
    case 'float': {
      const t = text.replace(XML_SPACE, '')
      const n = Number(t)
      if (!DOUBLE.test(t) || !Number.isFinite(n)) throw malformed(`<${type}> holds ${JSON.stringify(t)}, not a finite number`)
      return n + 0 // -0 → 0
    }
    case 'boolean': {
      const t = text.replace(XML_SPACE, '')
      if (t === '1') return true
      if (t === '0') return false
      const lower = t.toLowerCase()
      if (lower === 'true') return true
      if (lower === 'false') return false
      throw malformed(`<boolean> holds ${JSON.stringify(t)}, expected 1 or 0`)
    }
    case 'nil':
      return null
    case 'dateTime.iso8601':
      return typed ? { $dateTime: text } : text
    case 'base64': {
      const t = text.replace(ANY_SPACE, '')
      return typed ? { $base64: t } : t
    }
    default:
      throw malformed(`unknown XML-RPC type <${type.trim()}>`)
  }
}

function tooDeep (walk: Walk): XmlRpcParseError {
  return new XmlRpcParseError('too-deep', `XML-RPC value nests arrays/structs deeper than ${walk.maxDepth} levels`)
}

function decodeInteger (t: string, type: string): number | string {
  if (!INTEGER.test(t)) throw malformed(`<${type}> holds ${JSON.stringify(t)}, not an integer`)
  const n = Number(t)
  if (Number.isSafeInteger(n)) return n + 0 // -0 → 0
  return BigInt(t).toString() // beyond 2^53: exact decimal text, as a string
}

function decodeStruct (content: Entry[], level: number, walk: Walk): JsonValue {
  const struct: { [key: string]: JsonValue } = {}
  for (const member of elements(content, 'member', '<struct>')) {
    let name: string | undefined
    let value: Entry[] | undefined
    for (const entry of member) {
      const child = nameOf(entry)
      if (child === TEXT || child === CDATA) checkBlank(entry, '<member>')
      else if (child === 'name' && name === undefined) name = textOf(entry[child] as Entry[], '<name>')
      else if (child === 'value' && value === undefined) value = entry[child] as Entry[]
      else throw malformed(`unexpected <${child}> in <member>`)
    }
    if (name === undefined) throw malformed('<member> without <name>')
    if (value === undefined) throw malformed(`<member> ${JSON.stringify(name)} without <value>`)
    setOwn(struct, name, decodeValue(value, level, walk)) // `__proto__` stays an ordinary key
  }
  return struct
}

function decodeArray (content: Entry[], level: number, walk: Walk): JsonValue[] {
  const data = firstElement(content, 'data', '<array>')
  const array: JsonValue[] = []
  if (data === undefined) return array // <array/>: tolerated as empty
  for (const value of elements(data, 'value', '<data>')) array.push(decodeValue(value, level, walk))
  return array
}

/** The contents of each child element named `name`; blank text between them is formatting. */
function elements (children: Entry[], name: string, where: string): Entry[][] {
  const found: Entry[][] = []
  for (const entry of children) {
    const child = nameOf(entry)
    if (child === name) found.push(entry[child] as Entry[])
    else if (child === TEXT || child === CDATA) checkBlank(entry, where)
    else throw malformed(`unexpected <${child.trim()}> in ${where}, expected <${name}>`)
  }
  return found
}

function firstElement (children: Entry[], name: string, where: string): Entry[] | undefined {
  const found = elements(children, name, where)
  if (found.length > 1 && name === 'data') throw malformed(`${where} holds more than one <${name}>`)
  return found[0] // a second <param> in a response is ignored, as most clients do
}

function requireElement (children: Entry[], name: string, where: string): Entry[] {
  const found = firstElement(children, name, where)
  if (found === undefined) throw malformed(`${where} without <${name}>`)
  return found
}

/** The single child element of a container, with its contents. */
function onlyElement (children: Entry[], where: string): [string, Entry[]] {
  let found: [string, Entry[]] | undefined
  for (const entry of children) {
    const child = nameOf(entry)
    if (child === TEXT || child === CDATA) {
      checkBlank(entry, where)
    } else {
      if (found !== undefined) throw malformed(`${where} holds more than one element`)
      found = [child.trim(), entry[child] as Entry[]]
    }
  }
  if (found === undefined) throw malformed(`${where} is empty`)
  return found
}

/** Text content of a leaf element (entities decoded, CDATA kept): never trimmed. */
function textOf (children: Entry[], where: string): string {
  let text = ''
  for (const entry of children) {
    const name = nameOf(entry)
    if (name === TEXT) {
      const raw = entry[TEXT] as string
      text += raw.indexOf('&') === -1 ? raw : decodeEntities(raw, XmlRpcParseError)
    } else if (name === CDATA) {
      text += cdataText(entry)
    } else {
      throw malformed(`unexpected <${name.trim()}> in ${where}`)
    }
  }
  return text
}

function cdataText (entry: Entry): string {
  const inner = entry[CDATA] as Entry[]
  let text = ''
  for (const part of inner) text += part[TEXT] as string
  return text
}

function checkBlank (entry: Entry, where: string): void {
  const raw = entry[TEXT]
  if (typeof raw !== 'string' || !isWhitespace(raw)) throw malformed(`unexpected text in ${where}`)
}

// ---------------------------------------------------------------------------------------------------
// The fast path of decodeResponse

/**
 * Decodes the common shape of a methodResponse in one pass over the text, without building a tree:
 * the gateway decodes one per call, and the tree path (validator, parser, walk) costs about a
 * quarter of its CPU per call (docs/BENCHMARKS.md). It accepts a strict subset of XML-RPC: elements
 * without attributes (but `xmlns` declarations on the root) and with at most a simple prefix on
 * type names (Apache's `ex:i8`, `ex:nil`), `[ \t\n]` between them, entity and character
 * references, an optional XML declaration in its standard form, LF or CRLF line ends; no comments,
 * CDATA, PIs or DOCTYPE.
 *
 * Returns `undefined` on anything outside that subset, including every error: the tree path then
 * decodes the document or says what is wrong with it. So whenever this returns a value, it is the
 * value the tree path would return (test/lib/xmlrpc-scan.test.ts checks this on the golden files
 * and on generated and mutated documents).
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
