// The XML-RPC encoder (CONTRACT §3, "JSON ⇄ XML-RPC mapping", the request side): JSON params to a
// methodCall, and for the simulator a value or fault to a methodResponse.
//
// Plain string building rather than fast-xml-parser's XMLBuilder: the output is a fixed grammar, the
// builder would need an intermediate object tree built for it on every call, and its escaping neither
// writes CR as `&#13;` nor refuses characters XML cannot carry, both of which the contract needs
// (escapeXml in lib/xml-write.ts does them in one pass, none for plain strings).
import { DEFAULT_MAX_DEPTH } from './xml-read.js'
import { escapeXml, xmlDeclaration } from './xml-write.js'

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
