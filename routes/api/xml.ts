import { Readable } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import replyFrom from '@fastify/reply-from'
import type { Session } from '../../lib/sessions.js'
import type { PinnedResponse } from '../../lib/pinned-upstream.js'
import { prefersXml } from '../../lib/accept.js'
import { CharsetDecodeError, decodeXml, encodeXml } from '../../lib/charset.js'
import { jsonToXml, xmlToJson, XmlParseError } from '../../lib/xml.js'
import { BadRequest, BadUpstreamResponse, UnsupportedMediaType } from '../../lib/errors.js'

// reply-from takes one dispatcher per registration. The session rides along with the request
// headers under a symbol (reply-from copies them with Object.assign, which keeps symbols, and a
// symbol can never be sent on the wire); the dispatcher below sends the call on that session's
// pinned socket.
const SESSION = Symbol('legacy-gateway.session')

const PREFIX = '/api/xml'

// Never forwarded to the legacy server: hop-by-hop headers, the browser's credentials for the
// gateway, and anything that would change how the answer is encoded.
const DROP_REQUEST = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te',
  'trailer', 'transfer-encoding', 'upgrade', 'cookie', 'authorization', 'host',
  'content-length', 'expect', 'http2-settings'
])
// Never passed back to the browser: hop-by-hop headers and the legacy server's own cookies.
const DROP_RESPONSE = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-connection', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'set-cookie', 'set-cookie2'
])

type Headers = Record<string | symbol, unknown>

function isXmlType (contentType: unknown): contentType is string {
  if (typeof contentType !== 'string') return false
  const type = (contentType.split(';')[0] ?? '').trim().toLowerCase()
  return type === 'text/xml' || type === 'application/xml' || type.endsWith('+xml')
}

function stringHeaders (headers: Headers): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || value === null || DROP_REQUEST.has(name)) continue
    out[name] = Array.isArray(value) ? value.join(', ') : String(value)
  }
  return out
}

export default async function xmlRoutes (fastify: FastifyInstance): Promise<void> {
  const config = fastify.config
  const legacy = config.legacyUrl as URL
  const charset = config.legacyCharset

  const dispatcher = {
    request (opts: { method: string, path: string, headers: Headers, body?: unknown }, callback: (err: Error | null, res?: unknown) => void) {
      const session = opts.headers[SESSION] as Session | undefined
      if (session === undefined) {
        callback(new Error('xml proxy: request without a session'))
        return
      }
      const body = opts.body === undefined || opts.body === '' || opts.body === null ? undefined : opts.body as Buffer | string
      fastify.sessions.request(session, {
        method: opts.method,
        path: opts.path,
        headers: stringHeaders(opts.headers),
        ...(body === undefined ? {} : { body })
      }).then((res: PinnedResponse) => {
        // The answer was read whole on the pinned socket; what reply-from gets is a copy, so a
        // browser that goes away (reply-from then destroys this stream) cannot hurt the socket.
        callback(null, { statusCode: res.statusCode, headers: { ...res.headers }, body: Readable.from(res.body.length > 0 ? [res.body] : []) })
      }, (err: Error) => callback(err))
    },
    async close () {},
    async destroy () {}
  }

  await fastify.register(replyFrom, {
    base: legacy.origin,
    undici: dispatcher as never,
    disableRequestLogging: true
  })

  // XML bodies pass through byte for byte; JSON bodies are converted. Nothing else is accepted.
  const passBuffer = (_request: FastifyRequest, body: Buffer | string, done: (err: Error | null, body?: unknown) => void) => { done(null, body) }
  fastify.addContentTypeParser(['text/xml', 'application/xml'], { parseAs: 'buffer' }, passBuffer)
  fastify.addContentTypeParser(/^application\/[\w.+-]+\+xml/i, { parseAs: 'buffer' }, passBuffer)

  async function onSend (request: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
    const contentType = reply.getHeader('content-type')
    if (!isXmlType(contentType) || request.session === null) return payload
    const encoding = reply.getHeader('content-encoding')
    if (encoding !== undefined && encoding !== 'identity') return payload
    if (prefersXml(request.headers.accept)) return payload
    if (request.method === 'HEAD') {
      reply.header('content-type', 'application/json; charset=utf-8')
      reply.removeHeader('content-length')
      return payload
    }
    const buffer = await collect(payload)
    if (buffer.length === 0) {
      reply.removeHeader('content-type')
      reply.header('content-length', 0)
      return ''
    }
    let json: string
    try {
      json = JSON.stringify(xmlToJson(decodeXml(buffer, contentType, charset), { maxBytes: config.upstreamMaxResponseBytes }))
    } catch (err) {
      if (err instanceof XmlParseError) throw new BadUpstreamResponse(`${err.reason} XML (${err.message})`, { cause: err })
      if (err instanceof CharsetDecodeError) throw new BadUpstreamResponse(err.message, { cause: err })
      throw err
    }
    reply.header('content-type', 'application/json; charset=utf-8')
    reply.header('content-length', Buffer.byteLength(json))
    return json
  }

  fastify.all(`${PREFIX}/*`, {
    onRequest: fastify.requireSession,
    onSend
  }, async (request, reply) => {
    const session = request.session as Session
    const rawUrl = request.raw.url ?? request.url
    const queryAt = rawUrl.indexOf('?')
    const path = (queryAt >= 0 ? rawUrl.slice(0, queryAt) : rawUrl).slice(PREFIX.length) || '/'
    const contentType = request.headers['content-type']
    let body: Buffer | undefined
    let bodyType: string | undefined
    if (request.body !== undefined && request.body !== null) {
      if (Buffer.isBuffer(request.body)) {
        bodyType = contentType
      } else if (typeof request.body === 'object') {
        try {
          body = encodeXml(jsonToXml(request.body, charset === 'utf-8' ? {} : { encoding: charset.toUpperCase() }), charset)
        } catch (err) {
          throw new BadRequest(`the JSON body cannot be written as XML: ${(err as Error).message}`, { cause: err })
        }
        bodyType = `text/xml; charset=${charset}`
      } else {
        throw new UnsupportedMediaType(`Unsupported Media Type: ${contentType ?? 'none'}`)
      }
    }
    return reply.from(path, {
      ...(body !== undefined ? { body, contentType: bodyType } : {}),
      // No retries: a call on a legacy login must happen once or fail visibly.
      retryDelay: () => null,
      rewriteRequestHeaders: (_request, headers) => {
        const out: Headers = { ...headers }
        out[SESSION] = session
        // The answer is converted here, so it must come uncompressed; and a browser asking the
        // gateway for JSON is not asking the legacy server for it.
        out['accept-encoding'] = 'identity'
        if (!prefersXml(request.headers.accept)) out.accept = '*/*'
        return out as never
      },
      rewriteHeaders: (headers) => {
        const out: Record<string, unknown> = {}
        for (const [name, value] of Object.entries(headers)) {
          if (!DROP_RESPONSE.has(name)) out[name] = value
        }
        return out as never
      },
      onError: (reply, { error }) => {
        // Our own contract errors come back wrapped by reply-from; unwrap them.
        const cause = (error as Error & { cause?: unknown }).cause
        reply.send(cause instanceof Error && 'statusCode' in cause ? cause : error)
      }
    })
  })
}

async function collect (payload: unknown): Promise<Buffer> {
  if (Buffer.isBuffer(payload)) return payload
  if (typeof payload === 'string') return Buffer.from(payload)
  if (payload === null || payload === undefined) return Buffer.alloc(0)
  const chunks: Buffer[] = []
  for await (const chunk of payload as AsyncIterable<Buffer | string>) {
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk)
  }
  return Buffer.concat(chunks)
}
