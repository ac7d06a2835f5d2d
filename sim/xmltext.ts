// How the simulated legacy server writes its XML (RPC answers, XML documents, alarms): in the
// charset it is set to speak, declared or not. Escaping and encoding are the gateway's own
// (lib/xml-write.ts): apart from the fault modes' broken documents, the simulator writes text
// exactly as the gateway does.
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

const DECLARATION = /^\uFEFF?\s*<\?xml[^?]*\?>\s*/

/**
 * Replaces whatever declaration the encoder wrote with ours, so the declared charset always matches
 * the bytes; with `declare: false` the document has no declaration at all, like the field servers
 * that send GBK and say nothing about it. Written here rather than with xmlDeclaration: a simulated
 * server declares whatever label it was set to, even one (`936`) that xmlDeclaration refuses.
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
