// The floor forwarder: what one call costs in Node with nothing but the transport and our own codec,
// written for the benchmarks only (never shipped, never a product: no checks, no limits, no logs,
// no error shapes, no identity worth the name). It is the line the gateway's CPU per call is held
// to (bench/rpc.ts, `gateway/floor`).
//
// - `node:http` in;
// - one undici `Client` (one keep-alive socket) per login, in a Map keyed by the `x-user-id`
//   header (as seed-style: trusting the client is exactly what the gateway must not do);
// - /api/rpc/:method: `JSON.parse` → our `encodeCall` → the Client → our `decodeResponse` →
//   `JSON.stringify`;
// - /api/xml/*: the request body's bytes → the Client (same method, the path after the prefix) →
//   our `xmlToJson` → `JSON.stringify`.
//
// Everything the gateway does beyond this (framework, cookies, schemas, session bookkeeping,
// bounded queues and deadlines, metrics, request ids, charsets, policy) is what the ratio measures.
import http from 'node:http'
import { Client } from 'undici'
import { encodeCall, decodeResponse } from '../../lib/xmlrpc.js'
import { xmlToJson } from '../../lib/xml.js'

export interface FloorOptions {
  legacyUrl: URL
}

const LONG = 10 * 60_000
const RPC = '/api/rpc/'
const XML = '/api/xml'

function readBody (req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0] as Buffer : Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

function send (res: http.ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

export function createFloorServer (opts: FloorOptions): http.Server {
  const clients = new Map<string, Client>()
  const origin = opts.legacyUrl.origin
  const rpcPath = opts.legacyUrl.pathname

  const rpc = async (c: Client, method: string, params: unknown[]): Promise<string> => {
    const res = await c.request({ method: 'POST', path: rpcPath, headers: { 'content-type': 'text/xml' }, body: encodeCall(method, params) })
    const decoded = decodeResponse(await res.body.text())
    return JSON.stringify(decoded.fault ? { fault: decoded.faultString } : { result: decoded.value })
  }

  return http.createServer((req, res) => {
    const url = req.url ?? '/'
    const user = req.headers['x-user-id'] as string
    readBody(req).then(async (raw) => {
      if (url.startsWith(RPC)) {
        const c = clients.get(user) as Client
        const body = raw.length === 0 ? null : JSON.parse(raw.toString('utf8')) as unknown
        return send(res, 200, await rpc(c, url.slice(RPC.length), Array.isArray(body) ? body : []))
      }
      if (url.startsWith(XML)) {
        const c = clients.get(user) as Client
        const upstream = await c.request({
          method: req.method as 'GET',
          path: url.slice(XML.length),
          headers: req.headers['content-type'] === undefined ? {} : { 'content-type': req.headers['content-type'] },
          body: raw.length === 0 ? null : raw
        })
        return send(res, upstream.statusCode, JSON.stringify(xmlToJson(await upstream.body.text())))
      }
      if (url === '/api/login') {
        const { username, password } = JSON.parse(raw.toString('utf8')) as { username: string, password: string }
        const c = new Client(origin, { pipelining: 1, keepAliveTimeout: LONG, keepAliveMaxTimeout: LONG })
        clients.get(username)?.destroy().catch(() => {})
        clients.set(username, c)
        return send(res, 200, JSON.stringify({ user: username, result: JSON.parse(await rpc(c, 'login', [username, password])) }))
      }
      if (url === '/api/logout') {
        const c = clients.get(user)
        clients.delete(user)
        await c?.destroy()
        res.writeHead(204).end()
        return
      }
      send(res, 404, '{}')
    }).catch((err: unknown) => {
      if (!res.headersSent) send(res, 502, JSON.stringify({ error: (err as Error).message }))
    })
  })
}
