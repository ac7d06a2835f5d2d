import { encodeXml } from '../lib/xml-write.js'

/** How the simulator encodes what it sends (RPC answers, XML documents, alarms). */
export interface CharsetSetting {
  charset: string
  /** write encoding="…" in the XML declaration */
  declare: boolean
  /** add `; charset=…` to the Content-Type header (HTTP answers only) */
  header: boolean
}

export const DEFAULT_CHARSET: Readonly<CharsetSetting> = Object.freeze({ charset: 'utf-8', declare: true, header: false })

const XML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' }

export function escapeXml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => XML_ESCAPES[c] ?? c)
}

const DECLARATION = /^\uFEFF?\s*<\?xml[^?]*\?>\s*/

/**
 * Replaces whatever declaration the encoder wrote with ours, so the declared charset always matches
 * the bytes; with `declare: false` the document has no declaration at all, like the field servers
 * that send GBK and say nothing about it.
 */
export function withDeclaration (xml: string, setting: CharsetSetting): string {
  const bare = xml.replace(DECLARATION, '')
  if (!setting.declare) return bare
  return `<?xml version="1.0" encoding="${setting.charset.toUpperCase()}"?>\n${bare}`
}

export function encodeXmlDocument (xml: string, setting: CharsetSetting): Buffer {
  return encodeXml(withDeclaration(xml, setting), setting.charset)
}

export function xmlContentType (setting: CharsetSetting): string {
  return setting.header ? `text/xml; charset=${setting.charset}` : 'text/xml'
}
