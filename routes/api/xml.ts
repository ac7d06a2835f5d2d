import { Readable } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import replyFrom from '@fastify/reply-from'
import type { Session } from '../../lib/sessions.js'
import type { PinnedResponse } from '../../lib/pinned-upstream.js'
import { prefersXml } from '../../lib/accept.js'
import { CharsetDecodeError, decodeXml } from '../../lib/charset.js'
import { jsonToXml, xmlToJson, XmlParseError } from '../../lib/xml.js'
import { encodeXml } from '../../lib/xml-write.js'
import { BadRequest, BadUpstreamResponse, UnsupportedMediaType } from '../../lib/errors.js'
import { LegacyPathError, legacyTarget, pathKey, type LegacyTarget } from '../../lib/legacy-path.js'
import { REQUEST_ID_HEADER } from '../../lib/logger.js'

// reply-from takes one dispatcher per registration. The session and the target ride along with
// the request headers under a symbol (reply-from copies them with Object.assign, which keeps
// symbols, and a symbol can never be sent on the wire); the dispatcher below sends the call on
// that session's pinned socket.
const CALL = Symbol('legacy-gateway.call')

interface Call {
  session: Session
  /** The normalised path and the query (lib/legacy-path.ts), sent as they are. */
  target: string
}

const PREFIX = '/api/xml'

// The answer's bytes, read whole on the pinned socket, ride to onResponse beside the stream
// reply-from is given: sent as a Buffer, they reach onSend without a stream to build and drain.
const BODY = Symbol('legacy-gateway.body')
type Answer = { destroy: () => void, [BODY]?: Buffer }

declare module 'fastify' {
  interface FastifyRequest {
    /** /api/xml/*: where the request goes on the legacy server, once its target was accepted. */
    legacyTarget: LegacyTarget | null
  }
}

// What the browser may tell the legacy server. Everything else stays at the gateway: its
// credentials (cookies, Authorization), hop-by-hop headers, and identity claims such as
// X-Remote-User, X-Forwarded-User or X-Real-IP that legacy servers behind proxies tend to trust.
// Accept-Encoding is not here: the gateway asks for identity itself.
const FORWARD = [
  'content-type', 'accept', 'accept-language', 'accept-charset',
  'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since', 'if-range', 'range',
  'user-agent'
]
// What the legacy server may tell the browser: the representation, its caching and validators.
// Content-Encoding is kept although identity is asked for, so that a server that compresses anyway
// is passed through correctly (onSend leaves such an answer alone). Never Set-Cookie, and never
// Access-Control-*: the gateway owns its CORS policy.
const EXPOSE = [
  'content-type', 'content-length', 'content-encoding', 'content-language', 'content-disposition',
  'content-range', 'accept-ranges', 'cache-control', 'expires', 'pragma', 'last-modified', 'etag',
  'age', 'retry-after'
]

type Headers = Record<string | symbol, unknown>

/** The browser's Accept decides between JSON and the legacy bytes; the legacy server's Vary adds to it. */
function varyOn (legacy: unknown): string {
  const value = Array.isArray(legacy) ? legacy.join(', ') : typeof legacy === 'string' ? legacy : ''
  if (value.trim() === '') return 'Accept'
  if (value.split(',').some(v => { const name = v.trim().toLowerCase(); return name === 'accept' || name === '*' })) return value
  return `Accept, ${value}`
}

/**
 * Every answer here belongs to one user's session: a shared cache (nginx, a CDN) must never keep it
 * for another. `public` and `s-maxage` go, `private` is added unless the answer may not be stored
 * at all; the browser's own cache keeps what the legacy server allowed.
 */
function privateCaching (legacy: unknown): string {
  const value = Array.isArray(legacy) ? legacy.join(', ') : typeof legacy === 'string' ? legacy : ''
  const directives = value.split(',').map(d => d.trim()).filter(d => {
    const name = (d.split('=')[0] ?? '').trim().toLowerCase()
    return d !== '' && name !== 'public' && name !== 's-maxage'
  })
  const names = directives.map(d => (d.split('=')[0] ?? '').trim().toLowerCase())
  if (!names.includes('private') && !names.includes('no-store')) directives.unshift('private')
  return directives.join(', ')
}

function isXmlType (contentType: unknown): contentType is string {
  if (typeof contentType !== 'string') return false
  const type = (contentType.split(';')[0] ?? '').trim().toLowerCase()
  return type === 'text/xml' || type === 'application/xml' || type.endsWith('+xml')
}

function stringHeaders (headers: Headers): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || value === null) continue
    out[name] = Array.isArray(value) ? value.join(', ') : String(value)
  }
  return out
}

export default async function xmlRoutes (fastify: FastifyInstance): Promise<void> {
  const config = fastify.config
  const legacy = config.legacyUrl
  const charset = config.legacyCharset
  const forward = [...new Set([...FORWARD, ...config.legacyForwardHeaders])]
  const expose = new Set([...EXPOSE, ...config.legacyExposeHeaders])
  // A raw methodCall on the XML-RPC endpoint would run any method past the rules of /api/rpc/*.
  const rpcPathKey = pathKey(legacy.pathname)
  fastify.decorateRequest('legacyTarget', null)

  const dispatcher = {
    // opts.path is reply-from's rebuilding of the URL (WHATWG rules: backslashes become slashes,
    // escapes change); what is sent is the target decided by lib/legacy-path.ts.
    request (opts: { method: string, path: string, headers: Headers, body?: unknown }, callback: (err: Error | null, res?: unknown) => void) {
      const call = opts.headers[CALL] as Call | undefined
      if (call === undefined) {
        callback(new Error('xml proxy: request without a session'))
        return
      }
      const body = opts.body === undefined || opts.body === '' || opts.body === null ? undefined : opts.body as Buffer | string
      fastify.sessions.request(call.session, {
        method: opts.method,
        path: call.target,
        headers: stringHeaders(opts.headers),
        ...(body === undefined ? {} : { body })
      }).then((res: PinnedResponse) => {
        // The answer was read whole on the pinned socket; what reply-from gets is a copy, so a
        // browser that goes away (reply-from then destroys this stream) cannot hurt the socket.
        // A HEAD answer is sent as the (empty) stream it always was; any other as its Buffer
        // (onResponse below), so the stream is only there for reply-from to destroy.
        const body: Answer = opts.method === 'HEAD'
          ? Readable.from(res.body.length > 0 ? [res.body] : [])
          : { destroy () {}, [BODY]: res.body }
        callback(null, { statusCode: res.statusCode, headers: { ...res.headers }, body })
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
    // Only an answer of the legacy server is converted, never the gateway's own refusal.
    if (!isXmlType(contentType) || request.legacyTarget === null) return payload
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

  const policy = fastify.policy

  /** Where the request goes on the legacy server: 400 if it cannot go anywhere, 403 if not there. */
  function acceptTarget (request: FastifyRequest): LegacyTarget {
    let target: LegacyTarget
    try {
      target = legacyTarget(request.raw.url ?? request.url, PREFIX)
    } catch (err) {
      if (err instanceof LegacyPathError) throw new BadRequest(`the path cannot be sent to the legacy server: ${err.message}`, { cause: err })
      throw err
    }
    if (request.auditCall !== null) request.auditCall.path = target.path
    if (pathKey(target.path) === rpcPathKey) {
      throw policy.refuse('xml', `${target.path} is the legacy XML-RPC endpoint: call methods with POST /api/rpc/:method`)
    }
    // Matched on the normalised path (and, for XML_DENY, on every spelling of it): `%2e%2e`, `//`
    // or `;` cannot walk past an entry.
    if (!policy.xml.allows(target.path)) {
      throw policy.refuse('xml', `${target.path} may not be reached through the gateway (XML_ALLOW, XML_DENY)`)
    }
    return target
  }

  // Before the body is read: a refused target costs nothing more and sends nothing.
  // A callback hook, not an async one: no promise and no microtask turn per call.
  function checkTarget (request: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void): void {
    let refused: Error | undefined
    try {
      if (fastify.auditing) request.auditCall = { kind: 'xml', user: request.getSession().user, httpMethod: request.method, path: null }
      request.legacyTarget = acceptTarget(request)
    } catch (err) {
      refused = err as Error
    }
    done(refused)
  }

  fastify.all(`${PREFIX}/*`, {
    onRequest: [fastify.requireSession, checkTarget],
    onSend,
    config: { upstream: true }
  }, async (request, reply) => {
    const session = request.getSession()
    // Accepted by checkTarget before the body was read; the fallback keeps the handler right without it.
    const target = request.legacyTarget ?? acceptTarget(request)
    const call: Call = { session, target: target.path + target.query }
    const contentType = request.headers['content-type']
    let body: Buffer | undefined
    let bodyType: string | undefined
    if (request.body !== undefined && request.body !== null) {
      if (Buffer.isBuffer(request.body)) {
        // Given explicitly: from the request itself, reply-from would keep only the bare type and
        // drop the charset the bytes are in.
        body = request.body
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
    // The source only satisfies reply-from (it must be a relative path); the dispatcher sends call.target.
    return reply.from('/', {
      ...(body !== undefined ? { body, contentType: bodyType } : {}),
      // No retries: a call on a legacy login must happen once or fail visibly.
      retryDelay: () => null,
      rewriteRequestHeaders: (_request, headers) => {
        const out: Headers = {}
        for (const name of forward) {
          const value = (headers as Headers)[name]
          if (value !== undefined) out[name] = value
        }
        out[CALL] = call
        // The answer is converted here, so it must come uncompressed; and a browser asking the
        // gateway for JSON is not asking the legacy server for it.
        out['accept-encoding'] = 'identity'
        if (!prefersXml(request.headers.accept)) out.accept = '*/*'
        // The gateway's id (the browser's only when it is safe, lib/logger.ts): one id in both logs.
        out[REQUEST_ID_HEADER] = request.id
        return out as never
      },
      rewriteHeaders: (headers) => {
        const out: Record<string, unknown> = {}
        for (const [name, value] of Object.entries(headers)) {
          if (expose.has(name)) out[name] = value
        }
        out.vary = varyOn(headers.vary)
        out['cache-control'] = privateCaching(headers['cache-control'])
        return out as never
      },
      onResponse: (_request, reply, res) => {
        const stream = (res as unknown as { stream: Answer }).stream
        reply.send(stream[BODY] ?? stream)
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
