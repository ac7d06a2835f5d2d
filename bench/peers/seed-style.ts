// The naive design legacy-gateway replaces, written for the benchmarks only (never shipped):
//
// - a plain Node `http` server, no framework, no schema, no cookie;
// - the user id comes from the request (the `x-user-id` header), which is exactly the flaw: anyone
//   can name anyone's socket;
// - one `new http.Agent({ keepAlive: true, maxSockets: 1 })` per user id in a Map, so each user's
//   calls go out serialized on one keep-alive socket (and silently on a new, not logged-in one if it
//   closed);
// - the XML-RPC request built by string concatenation, the answer converted with xml2js.
//
// It is written the way such a seed usually is, but it is not sabotaged: it streams nothing it need
// not, keeps one xml2js parser configuration, and handles the types the benchmark sends.
import http from 'node:http'
import xml2js from 'xml2js'

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

export interface SeedStyleOptions {
  legacyUrl: URL
}

function escape (s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

function toXmlValue (v: unknown): string {
  if (v === null || v === undefined) return '<value><nil/></value>'
  if (typeof v === 'boolean') return '<value><boolean>' + (v ? '1' : '0') + '</boolean></value>'
  if (typeof v === 'number') {
    return Number.isInteger(v) ? '<value><int>' + v + '</int></value>' : '<value><double>' + v + '</double></value>'
  }
  if (typeof v === 'string') return '<value><string>' + escape(v) + '</string></value>'
  if (Array.isArray(v)) return '<value><array><data>' + v.map(toXmlValue).join('') + '</data></array></value>'
  let xml = '<value><struct>'
  for (const [k, m] of Object.entries(v as Record<string, unknown>)) {
    xml += '<member><name>' + escape(k) + '</name>' + toXmlValue(m) + '</member>'
  }
  return xml + '</struct></value>'
}

function buildCall (method: string, params: unknown[]): string {
  let xml = '<?xml version="1.0"?><methodCall><methodName>' + method + '</methodName><params>'
  for (const p of params) xml += '<param>' + toXmlValue(p) + '</param>'
  return xml + '</params></methodCall>'
}

// xml2js with its defaults: every child is an array, text is `_` beside attributes or the string itself.
type X2 = string | { [key: string]: X2[] | string | undefined }

function fromXml2js (value: X2 | undefined): Json {
  if (value === undefined) return ''
  if (typeof value === 'string') return value
  const type = Object.keys(value).find(k => k !== '_' && k !== '$')
  if (type === undefined) return typeof value._ === 'string' ? value._ : ''
  const inner = (value[type] as X2[] | undefined)?.[0]
  const text = typeof inner === 'string' ? inner : (inner !== undefined && typeof inner._ === 'string' ? inner._ : '')
  switch (type) {
    case 'int': case 'i4': case 'i8': case 'double': return Number(text)
    case 'boolean': return text === '1'
    case 'nil': return null
    case 'array': {
      const data = (inner as { data?: X2[] } | undefined)?.data?.[0]
      const values = typeof data === 'object' ? (data.value as X2[] | undefined) ?? [] : []
      return values.map(fromXml2js)
    }
    case 'struct': {
      const out: Record<string, Json> = {}
      const members = typeof inner === 'object' ? (inner.member as X2[] | undefined) ?? [] : []
      for (const m of members) {
        if (typeof m !== 'object') continue
        const name = (m.name as string[] | undefined)?.[0] ?? ''
        out[name] = fromXml2js((m.value as X2[] | undefined)?.[0])
      }
      return out
    }
    default: return text // string, dateTime.iso8601, base64
  }
}

function parseResponse (xml: string): Promise<{ result?: Json, fault?: Json }> {
  return new Promise((resolve, reject) => {
    xml2js.parseString(xml, (err: Error | null, doc: { methodResponse?: { params?: Array<{ param: Array<{ value: X2[] }> }>, fault?: Array<{ value: X2[] }> } }) => {
      if (err !== null) return reject(err)
      const res = doc.methodResponse
      if (res?.fault !== undefined) return resolve({ fault: fromXml2js(res.fault[0]?.value[0]) })
      resolve({ result: fromXml2js(res?.params?.[0]?.param[0]?.value[0]) })
    })
  })
}

function readBody (req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => { body += chunk })
    req.on('end', () => resolve(body))
    req.on('error', reject)
  })
}

function send (res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

export function createSeedStyleServer (opts: SeedStyleOptions): http.Server {
  const agents = new Map<string, http.Agent>()
  const target = opts.legacyUrl

  const call = (agent: http.Agent, method: string, params: unknown[]): Promise<{ result?: Json, fault?: Json }> => {
    const body = buildCall(method, params)
    return new Promise((resolve, reject) => {
      const req = http.request({
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: 'POST',
        agent,
        headers: { 'content-type': 'text/xml', 'content-length': Buffer.byteLength(body) }
      }, (res) => {
        readBody(res).then(parseResponse).then(resolve, reject)
      })
      req.on('error', reject)
      req.end(body)
    })
  }

  return http.createServer((req, res) => {
    const url = req.url ?? '/'
    readBody(req).then(async (raw) => {
      const body = raw === '' ? null : JSON.parse(raw) as unknown
      if (req.method === 'POST' && url === '/api/login') {
        const { username, password } = body as { username: string, password: string }
        let agent = agents.get(username)
        if (agent === undefined) {
          agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
          agents.set(username, agent)
        }
        const answer = await call(agent, 'login', [username, password])
        if (answer.fault !== undefined) return send(res, 401, { error: 'login failed', fault: answer.fault })
        return send(res, 200, { user: username, result: answer.result })
      }
      if (req.method === 'POST' && url.startsWith('/api/rpc/')) {
        const user = req.headers['x-user-id']
        const agent = typeof user === 'string' ? agents.get(user) : undefined
        if (agent === undefined) return send(res, 401, { error: 'not logged in' })
        const answer = await call(agent, url.slice('/api/rpc/'.length), Array.isArray(body) ? body : [])
        if (answer.fault !== undefined) return send(res, 422, { error: 'fault', fault: answer.fault })
        return send(res, 200, { result: answer.result })
      }
      if (req.method === 'POST' && url === '/api/logout') {
        const user = req.headers['x-user-id']
        const agent = typeof user === 'string' ? agents.get(user) : undefined
        if (agent !== undefined && typeof user === 'string') {
          await call(agent, 'logout', []).catch(() => {})
          agents.delete(user)
          agent.destroy()
        }
        res.writeHead(204).end()
        return
      }
      send(res, 404, { error: 'not found' })
    }).catch((err: unknown) => {
      if (!res.headersSent) send(res, 502, { error: (err as Error).message })
    })
  })
}
