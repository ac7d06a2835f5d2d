// The XML-RPC codec (CONTRACT §3, "JSON ⇄ XML-RPC mapping"), as the gateway, the simulator and the
// benchmarks import it. It lives in three rooms, one job each:
//
//   lib/xmlrpc-encode.ts  JSON to methodCall, methodResponse and fault text
//   lib/xmlrpc-decode.ts  the tree decoder on fast-xml-parser: the authority on every document
//   lib/xmlrpc-scan.ts    a one-pass scanner for the common answers: optional, tested against the tree
//
// decodeResponse is here, not in the decoder, because it is the one place that knows both decoders:
// the scanner builds on the decoder (its scalarOf and faultOf), so the decoder cannot import it back,
// and without the scanner this function would be decodeResponseTree.
import { limitsOf } from './xml-read.js'
import type { DecodeLimits } from './xml-read.js'
import { decodeResponseTree, type MethodResponse } from './xmlrpc-decode.js'
import { scanResponse } from './xmlrpc-scan.js'

export { encodeCall, encodeFault, encodeResponse } from './xmlrpc-encode.js'
export { XmlRpcParseError, decodeCall } from './xmlrpc-decode.js'
export type { JsonValue, MethodResponse } from './xmlrpc-decode.js'
export type { DecodeLimits, XmlErrorReason } from './xml-read.js'

/** An answer's value or fault; XmlRpcParseError, and nothing else, for any input it cannot accept. */
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
