/**
 * The legacy methods as OpenAPI 3.1 operations, from the catalogue (lib/discovery.ts): one
 * `POST /api/rpc/<method>` per method the caller may call, with param and result types from the
 * first of its signatures where the server gives them (the §3 JSON ⇄ XML-RPC mapping).
 */
import type { Catalogue, MethodInfo } from './discovery.js'

type Schema = Record<string, unknown>

/** A JSON value the gateway sends as this XML-RPC type. */
function requestSchema (type: string): Schema {
  switch (type.toLowerCase()) {
    case 'int': case 'i4': case 'i8': return { type: 'integer' }
    case 'double': return { type: 'number' }
    case 'boolean': return { type: 'boolean' }
    case 'string': return { type: 'string' }
    case 'nil': return { type: 'null' }
    case 'struct': return { type: 'object' }
    case 'array': return { type: 'array' }
    case 'datetime.iso8601': return { type: 'object', required: ['$dateTime'], properties: { $dateTime: { type: 'string' } }, additionalProperties: false }
    case 'base64': return { type: 'object', required: ['$base64'], properties: { $base64: { type: 'string' } }, additionalProperties: false }
    default: return {}
  }
}

/** The JSON value an answer of this XML-RPC type becomes. */
function responseSchema (type: string): Schema {
  switch (type.toLowerCase()) {
    case 'int': case 'i4': case 'double': return { type: 'number' }
    // An i8 beyond 2^53 comes as a string.
    case 'i8': return { type: ['integer', 'string'] }
    case 'boolean': return { type: 'boolean' }
    case 'string': case 'datetime.iso8601': case 'base64': return { type: 'string' }
    case 'nil': return { type: 'null' }
    case 'struct': return { type: 'object' }
    case 'array': return { type: 'array' }
    default: return {}
  }
}

const ERROR_REF = { $ref: '#/components/schemas/LegacyGatewayError' }

function operation (method: MethodInfo): Schema {
  const signature = method.signatures?.[0]
  const params: Schema = signature === undefined
    ? { type: 'array' }
    : { type: 'array', prefixItems: signature.slice(1).map(requestSchema), minItems: signature.length - 1, maxItems: signature.length - 1 }
  const result = signature === undefined ? {} : responseSchema(signature[0] ?? '')
  const summary = method.help?.split('\n')[0]?.trim()
  const errors = Object.fromEntries(['401', '403', '422', '429', '502', '504'].map(s => [s, { description: 'see the error codes', content: { 'application/json': { schema: ERROR_REF } } }]))
  return {
    post: {
      operationId: `legacy:${method.name}`,
      tags: ['legacy'],
      ...(summary ? { summary } : {}),
      ...(method.help !== null ? { description: method.help } : {}),
      requestBody: { required: false, content: { 'application/json': { schema: params } } },
      responses: {
        200: { description: 'the result', content: { 'application/json': { schema: { type: 'object', required: ['result'], properties: { result } } } } },
        ...errors
      }
    }
  }
}

/** `doc` (the gateway's own, from @fastify/swagger) with the legacy methods added; `doc` is not changed. */
export function withLegacyMethods (doc: Schema, catalogue: Catalogue): Schema {
  const paths: Schema = { ...(doc.paths as Schema | undefined) }
  for (const method of catalogue.methods) paths[`/api/rpc/${method.name}`] = operation(method)
  const components = (doc.components as Schema | undefined) ?? {}
  return {
    ...doc,
    paths,
    components: {
      ...components,
      schemas: {
        ...(components.schemas as Schema | undefined),
        LegacyGatewayError: {
          type: 'object',
          required: ['statusCode', 'code', 'error', 'message'],
          properties: { statusCode: { type: 'integer' }, code: { type: 'string' }, error: { type: 'string' }, message: { type: 'string' }, faultCode: { type: 'integer' } }
        }
      }
    },
    tags: [...((doc.tags as unknown[] | undefined) ?? []), { name: 'legacy', description: catalogue.introspection ? 'the legacy server\'s methods, as it describes them' : 'the legacy server does not describe its methods' }]
  }
}
