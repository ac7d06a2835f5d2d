// The XML-RPC tree decoder (CONTRACT §3, "JSON ⇄ XML-RPC mapping", the answer side; calls too, for
// the simulator): the authority on what a document means and on what is wrong with it.
//
// fast-xml-parser, through lib/xml-read.ts (which adds what the parser leaves out: well-formedness,
// DOCTYPE refusal, entity decoding, limits), builds its `preserveOrder` tree, which keeps text exactly
// and never merges or collapses elements; the walk below types it. The scanner of lib/xmlrpc-scan.ts
// types what it reads with this file's scalarOf and faultOf, so that the two cannot differ there.
import {
  CDATA, TEXT, XmlInputError, decodeEntities, isWhitespace, limitsOf, nameOf, parseDocument, setOwn
} from './xml-read.js'
import type { DecodeLimits, Entry } from './xml-read.js'

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

export type MethodResponse =
  | { fault: false, value: JsonValue }
  | { fault: true, faultCode: number, faultString: string }

/** Any input decodeResponse/decodeCall cannot accept: malformed, hostile, oversized, too deep or not XML-RPC. */
export class XmlRpcParseError extends XmlInputError {
  override readonly name = 'XmlRpcParseError'
}

interface Walk {
  maxDepth: number
  typed: boolean
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
  return new XmlRpcParseError('not-xmlrpc', `the document's root element is <${name}>, expected <${expected}>`)
}

function decodeFault (value: Entry[], walk: Walk): MethodResponse {
  return faultOf(decodeValue(value, 0, walk))
}

/** A fault's struct as a MethodResponse; shared with the scanner. */
export function faultOf (fault: JsonValue): MethodResponse {
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
export function scalarOf (local: string, type: string, text: string, typed: boolean): JsonValue {
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
      throw malformed(`unknown XML-RPC type <${type}>`)
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
    else throw malformed(`unexpected <${child}> in ${where}, expected <${name}>`)
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
      found = [child, entry[child] as Entry[]]
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
      throw malformed(`unexpected <${name}> in ${where}`)
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
