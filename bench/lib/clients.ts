// Virtual users of the RPC and sessions benchmarks: one keep-alive connection each (an undici
// Client, so the load generator's own cost per call is small and the same for every system).
import { Client } from 'undici'
import { encodeCall, decodeResponse } from '../../lib/xmlrpc.js'

/** What every user sends: `echo` with a small struct (the simulator answers with the params). */
export const ECHO_PARAMS = [{ id: 42, source: 'pump-3', level: 'critical', value: 3.5, active: true }]

const LONG = 10 * 60_000

export interface VirtualUser {
  readonly name: string
  call (): Promise<void>
  close (): Promise<void>
}

export type SystemName = 'direct' | 'floor' | 'legacy-gateway' | 'seed-style' | 'direct-xml' | 'floor-xml' | 'gateway-xml'

/**
 * The /api/xml/* workload: `POST` of a small XML document to the simulator's `/xml/echo`, which
 * answers a 1 KB XML document (the body, escaped, inside `<echo>`), converted to JSON by the gateway
 * and the floor. Browser path `/api/xml/xml/echo`; legacy path `/xml/echo`.
 */
export const XML_PATH = '/xml/echo'
export const XML_BODY = '<?xml version="1.0" encoding="UTF-8"?>\n<devices count="2">' +
  '<device id="p3" kind="pump"><name>pump-3</name><status>ok</status><code>010</code><pressure unit="bar">3.50</pressure><location>hall A &amp; B</location></device>' +
  '<device id="v1" kind="valve"><name>阀门-1</name><status>closed</status><code>007</code><pressure unit="bar">0</pressure><location>二号车间 &lt;east&gt;</location></device>' +
  '</devices>'

function client (origin: string): Client {
  // A user's socket must never be closed under it (the direct user's login lives on it).
  return new Client(origin, { pipelining: 1, keepAliveTimeout: LONG, keepAliveMaxTimeout: LONG, headersTimeout: LONG, bodyTimeout: LONG })
}

class UnexpectedAnswer extends Error {}

/** Straight to the simulator: login on the user's own socket, then XML-RPC on it. */
export async function directUser (rpcUrl: string, name: string): Promise<VirtualUser> {
  const url = new URL(rpcUrl)
  const c = client(url.origin)
  const post = async (body: string): Promise<string> => {
    const res = await c.request({ method: 'POST', path: url.pathname, headers: { 'content-type': 'text/xml' }, body })
    const text = await res.body.text()
    if (res.statusCode !== 200) throw new UnexpectedAnswer(`direct ${name}: HTTP ${res.statusCode}`)
    return text
  }
  const login = decodeResponse(await post(encodeCall('login', [name, name])))
  if (login.fault) throw new UnexpectedAnswer(`direct ${name}: login fault ${login.faultString}`)
  const echo = encodeCall('echo', ECHO_PARAMS)
  const first = decodeResponse(await post(echo))
  if (first.fault || JSON.stringify(first.value) !== JSON.stringify(ECHO_PARAMS)) throw new UnexpectedAnswer(`direct ${name}: echo answered ${JSON.stringify(first)}`)
  return {
    name,
    async call () {
      const text = await post(echo)
      // A fault (for instance "not logged in" after a reconnect) must not pass for a call.
      if (text.includes('<fault>')) throw new UnexpectedAnswer(`direct ${name}: ${text}`)
    },
    close: () => c.close()
  }
}

async function postJson (c: Client, path: string, headers: Record<string, string>, body: string): Promise<{ status: number, text: string, setCookie: string | string[] | undefined }> {
  const res = await c.request({ method: 'POST', path, headers: { 'content-type': 'application/json', ...headers }, body })
  const text = await res.body.text()
  return { status: res.statusCode, text, setCookie: res.headers['set-cookie'] }
}

function sessionCookie (setCookie: string | string[] | undefined): string {
  const all = Array.isArray(setCookie) ? setCookie : setCookie === undefined ? [] : [setCookie]
  const sid = all.map(c => c.split(';')[0] ?? '').find(c => c.startsWith('lg_sid='))
  if (sid === undefined) throw new UnexpectedAnswer('login answered without a session cookie')
  return sid
}

/** Through legacy-gateway: login sets the session cookie; calls go to /api/rpc/echo with it. */
export async function gatewayUser (baseUrl: string, name: string): Promise<VirtualUser & { cookie: string }> {
  const c = client(baseUrl)
  const login = await postJson(c, '/api/login', {}, JSON.stringify({ username: name, password: name }))
  if (login.status !== 200) throw new UnexpectedAnswer(`gateway ${name}: login ${login.status} ${login.text}`)
  const cookie = sessionCookie(login.setCookie)
  const body = JSON.stringify(ECHO_PARAMS)
  const expected = JSON.stringify({ result: ECHO_PARAMS })
  const first = await postJson(c, '/api/rpc/echo', { cookie }, body)
  if (first.status !== 200 || JSON.stringify(JSON.parse(first.text)) !== expected) throw new UnexpectedAnswer(`gateway ${name}: echo ${first.status} ${first.text}`)
  return {
    name,
    cookie,
    async call () {
      const res = await postJson(c, '/api/rpc/echo', { cookie }, body)
      if (res.status !== 200) throw new UnexpectedAnswer(`gateway ${name}: ${res.status} ${res.text}`)
    },
    async close () {
      await postJson(c, '/api/logout', { cookie }, '{}').catch(() => {})
      await c.close()
    }
  }
}

/**
 * Through the seed-style peer (or the floor forwarder, `label` 'floor', which speaks the same): the
 * user id travels in a header, as that design has it.
 */
export async function seedStyleUser (baseUrl: string, name: string, label = 'seed-style'): Promise<VirtualUser> {
  const c = client(baseUrl)
  const login = await postJson(c, '/api/login', {}, JSON.stringify({ username: name, password: name }))
  if (login.status !== 200) throw new UnexpectedAnswer(`${label} ${name}: login ${login.status} ${login.text}`)
  const headers = { 'x-user-id': name }
  const body = JSON.stringify(ECHO_PARAMS)
  const expected = JSON.stringify({ result: ECHO_PARAMS })
  const first = await postJson(c, '/api/rpc/echo', headers, body)
  if (first.status !== 200 || JSON.stringify(JSON.parse(first.text)) !== expected) throw new UnexpectedAnswer(`${label} ${name}: echo ${first.status} ${first.text}`)
  return {
    name,
    async call () {
      const res = await postJson(c, '/api/rpc/echo', headers, body)
      if (res.status !== 200) throw new UnexpectedAnswer(`${label} ${name}: ${res.status} ${res.text}`)
    },
    async close () {
      await postJson(c, '/api/logout', headers, '{}').catch(() => {})
      await c.close()
    }
  }
}

async function xmlPost (c: Client, path: string, headers: Record<string, string>): Promise<{ status: number, text: string }> {
  const res = await c.request({ method: 'POST', path, headers: { 'content-type': 'text/xml', ...headers }, body: XML_BODY })
  return { status: res.statusCode, text: await res.body.text() }
}

/** Whether a JSON answer of the XML workload is the echoed document, converted. */
function isXmlEcho (text: string): boolean {
  const json = JSON.parse(text) as { echo?: { body?: unknown } }
  return json.echo?.body === XML_BODY
}

/** The XML workload straight to the simulator: login on the user's own socket, then XML on it. */
export async function directXmlUser (rpcUrl: string, name: string): Promise<VirtualUser> {
  const url = new URL(rpcUrl)
  const c = client(url.origin)
  const login = await c.request({ method: 'POST', path: url.pathname, headers: { 'content-type': 'text/xml' }, body: encodeCall('login', [name, name]) })
  const loginText = await login.body.text()
  if (decodeResponse(loginText).fault) throw new UnexpectedAnswer(`direct-xml ${name}: login ${loginText}`)
  const first = await xmlPost(c, XML_PATH, {})
  if (first.status !== 200 || !first.text.includes('<echo>')) throw new UnexpectedAnswer(`direct-xml ${name}: ${first.status} ${first.text}`)
  return {
    name,
    async call () {
      const res = await xmlPost(c, XML_PATH, {})
      if (res.status !== 200) throw new UnexpectedAnswer(`direct-xml ${name}: ${res.status} ${res.text}`)
    },
    close: () => c.close()
  }
}

/** The XML workload through the gateway (`cookie`) or the floor (`x-user-id`): the answer as JSON. */
async function proxiedXmlUser (label: string, baseUrl: string, name: string, gateway: boolean): Promise<VirtualUser> {
  const c = client(baseUrl)
  const login = await postJson(c, '/api/login', {}, JSON.stringify({ username: name, password: name }))
  if (login.status !== 200) throw new UnexpectedAnswer(`${label} ${name}: login ${login.status} ${login.text}`)
  const headers: Record<string, string> = gateway ? { cookie: sessionCookie(login.setCookie) } : { 'x-user-id': name }
  const path = '/api/xml' + XML_PATH
  const first = await xmlPost(c, path, headers)
  if (first.status !== 200 || !isXmlEcho(first.text)) throw new UnexpectedAnswer(`${label} ${name}: ${first.status} ${first.text}`)
  return {
    name,
    async call () {
      const res = await xmlPost(c, path, headers)
      if (res.status !== 200) throw new UnexpectedAnswer(`${label} ${name}: ${res.status} ${res.text}`)
    },
    async close () {
      await postJson(c, '/api/logout', headers, '{}').catch(() => {})
      await c.close()
    }
  }
}

export async function gatewayXmlUser (baseUrl: string, name: string): Promise<VirtualUser> {
  return await proxiedXmlUser('gateway-xml', baseUrl, name, true)
}

export async function floorXmlUser (baseUrl: string, name: string): Promise<VirtualUser> {
  return await proxiedXmlUser('floor-xml', baseUrl, name, false)
}
