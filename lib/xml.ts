// Generic XML ⇄ JSON (CONTRACT §3, "Generic XML ⇄ JSON mapping"), for /api/xml/* bodies and alarm
// datagrams. Element → key, attribute → "@name", text beside children or attributes → "#text", a
// repeated element → an array; every value stays a string, exactly as sent. Reading goes through
// lib/xml-read.ts and writing through lib/xml-write.ts, as for XML-RPC.
import {
  ATTRS, CDATA, DEFAULT_MAX_DEPTH, RESERVED_MARK, TEXT, XmlInputError, decodeAttribute, decodeEntities,
  isWhitespace, limitsOf, nameOf, parseDocument, setOwn
} from './xml-read.js'
import type { DecodeLimits, Entry } from './xml-read.js'
import { escapeXml, xmlDeclaration } from './xml-write.js'

export type { DecodeLimits, XmlErrorReason } from './xml-read.js'

export type XmlJson = { [key: string]: XmlJsonNode }
export type XmlJsonNode = string | XmlJson | Array<string | XmlJson>

/** Any input xmlToJson cannot accept: malformed, hostile, oversized or too deep. */
export class XmlParseError extends XmlInputError {
  override readonly name = 'XmlParseError'
}

/**
 * `<alarm><id>42</id></alarm>` → `{ "alarm": { "id": "42" } }`. `maxDepth` counts element levels, the
 * root being level 1. Throws XmlParseError, and nothing else, for any input it cannot accept.
 */
export function xmlToJson (xml: string, limits?: DecodeLimits): XmlJson {
  try {
    const { maxBytes, maxDepth } = limitsOf(limits)
    // The parser refuses nesting a little past maxDepth, before the recursive walk; the walk is exact.
    const root = parseDocument(xml, maxBytes, maxDepth + 1, true, XmlParseError)
    const json: XmlJson = {}
    setOwn<XmlJsonNode>(json, unmark(root.name), toNode(root.children, root.attrs, 1, maxDepth))
    return json
  } catch (err) {
    if (err instanceof XmlParseError) throw err
    if (err instanceof RangeError) throw new XmlParseError('too-deep', 'XML document nested too deeply', { cause: err })
    throw new XmlParseError('malformed', `invalid XML: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

function unmark (name: string): string {
  return name.startsWith(RESERVED_MARK) ? name.slice(RESERVED_MARK.length) : name
}

function toNode (children: Entry[], attrs: Record<string, string> | undefined, depth: number, maxDepth: number): string | XmlJson {
  if (depth > maxDepth) throw new XmlParseError('too-deep', `XML nests elements deeper than ${maxDepth} levels`)
  let node: XmlJson | undefined
  if (attrs !== undefined) {
    node = {}
    for (const key of Object.keys(attrs)) setOwn<XmlJsonNode>(node, key, decodeAttribute(attrs[key] as string, XmlParseError))
  }
  let repeated: Set<string> | undefined
  let hasChildren = false
  let text = '' // every text run
  let data = '' // the runs that are not formatting between child elements
  for (const entry of children) {
    const name = nameOf(entry)
    if (name === TEXT) {
      const raw = entry[TEXT] as string
      const decoded = decodeEntities(raw, XmlParseError)
      text += decoded
      if (!isWhitespace(raw)) data += decoded
    } else if (name === CDATA) {
      let cdata = ''
      for (const part of entry[CDATA] as Entry[]) cdata += part[TEXT] as string
      text += cdata
      data += cdata
    } else {
      hasChildren = true
      node ??= {}
      const key = unmark(name)
      const value = toNode(entry[name] as Entry[], entry[ATTRS] as Record<string, string> | undefined, depth + 1, maxDepth)
      if (!Object.hasOwn(node, key)) {
        setOwn<XmlJsonNode>(node, key, value)
      } else if (repeated?.has(key) === true) {
        (node[key] as Array<string | XmlJson>).push(value)
      } else {
        setOwn<XmlJsonNode>(node, key, [node[key] as string | XmlJson, value])
        ;(repeated ??= new Set()).add(key)
      }
    }
  }
  if (node === undefined) return text // text only, possibly "" or whitespace: kept exactly
  const own = hasChildren ? data : text
  if (own !== '') setOwn<XmlJsonNode>(node, '#text', own)
  return node
}

// XML 1.0 (5th edition) Name, Basic Multilingual Plane only.
const NAME_START = ':A-Z_a-z\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u02FF\\u0370-\\u037D\\u037F-\\u1FFF\\u200C-\\u200D' +
  '\\u2070-\\u218F\\u2C00-\\u2FEF\\u3001-\\uD7FF\\uF900-\\uFDCF\\uFDF0-\\uFFFD'
// Combining marks (U+0300–036F) are name characters on their own here, as the XML spec lists them.
// eslint-disable-next-line no-misleading-character-class
const XML_NAME = new RegExp(`^[${NAME_START}][${NAME_START}\\-.0-9\\u00B7\\u0300-\\u036F\\u203F-\\u2040]*$`)
// What xmlToJson accepts by default (element levels, the root being level 1, a leaf counting as much
// as a parent), and so what the gateway decodes: a document it writes can always come back through
// its own decoder, and anything deeper (or cyclic) is refused before it is sent.
const MAX_ENCODE_DEPTH = DEFAULT_MAX_DEPTH

/**
 * The inverse of xmlToJson: `{ root: … }` → `<?xml version="1.0"?><root>…</root>`. Finite numbers and
 * booleans are written with String(), null as an empty element. Throws a TypeError for anything that has
 * no XML form: not exactly one top-level key, an invalid element or attribute name, a nested array, a
 * non-finite number, elements nested deeper than xmlToJson's default `maxDepth`, a cycle.
 */
export function jsonToXml (json: unknown, opts?: { encoding?: string }): string {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new TypeError('jsonToXml expects an object whose single key is the root element')
  }
  const keys = Object.keys(json)
  if (keys.length !== 1) throw new TypeError(`jsonToXml expects exactly one top-level key (the root element), got ${keys.length}`)
  const root = keys[0] as string
  const value = (json as Record<string, unknown>)[root]
  if (Array.isArray(value)) throw new TypeError('the root element cannot repeat')
  return xmlDeclaration(opts?.encoding) + element(root, value, 0)
}

function checkName (name: string, what: string): void {
  if (!XML_NAME.test(name)) throw new TypeError(`${JSON.stringify(name)} is not a valid XML ${what} name`)
}

/** `depth` is the number of elements around this one. */
function element (name: string, value: unknown, depth: number): string {
  checkName(name, 'element')
  if (depth >= MAX_ENCODE_DEPTH) throw new TypeError(`elements nested deeper than ${MAX_ENCODE_DEPTH} levels (or a cycle): more than the gateway decodes`)
  if (Array.isArray(value)) {
    let xml = ''
    for (const item of value) {
      if (Array.isArray(item)) throw new TypeError(`<${name}>: an array inside an array has no XML form`)
      xml += element(name, item, depth)
    }
    return xml
  }
  if (value === null || value === undefined) return `<${name}/>`
  if (typeof value !== 'object') {
    const text = escapeXml(scalar(value, name))
    return text === '' ? `<${name}/>` : `<${name}>${text}</${name}>`
  }
  let attributes = ''
  let text = ''
  let content = ''
  for (const key of Object.keys(value)) {
    const member = (value as Record<string, unknown>)[key]
    if (key.startsWith('@')) {
      if (member === undefined) continue
      const attribute = key.slice(1)
      checkName(attribute, 'attribute')
      attributes += ` ${attribute}="${escapeXml(member === null ? '' : scalar(member, key), true)}"`
    } else if (key === '#text') {
      if (member !== undefined && member !== null) text += escapeXml(scalar(member, key))
    } else if (member !== undefined) {
      content += element(key, member, depth + 1)
    }
  }
  return text === '' && content === '' ? `<${name}${attributes}/>` : `<${name}${attributes}>${text}${content}</${name}>`
}

function scalar (value: unknown, where: string): string {
  switch (typeof value) {
    case 'string': return value
    case 'number':
      // JSON.parse reads 1e400 as Infinity: sending the text "Infinity" would be a value nobody wrote.
      if (!Number.isFinite(value)) throw new TypeError(`${where}: ${value} is not a finite number`)
      return String(value)
    case 'boolean':
    case 'bigint': return String(value)
    default: throw new TypeError(`${where}: a ${value === null ? 'null' : typeof value} cannot be written as XML text`)
  }
}
