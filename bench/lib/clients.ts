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

export type SystemName = 'direct' | 'legacy-gateway' | 'seed-style'

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

/** Through the seed-style peer: the user id travels in a header, as that design has it. */
export async function seedStyleUser (baseUrl: string, name: string): Promise<VirtualUser> {
  const c = client(baseUrl)
  const login = await postJson(c, '/api/login', {}, JSON.stringify({ username: name, password: name }))
  if (login.status !== 200) throw new UnexpectedAnswer(`seed-style ${name}: login ${login.status} ${login.text}`)
  const headers = { 'x-user-id': name }
  const body = JSON.stringify(ECHO_PARAMS)
  const expected = JSON.stringify({ result: ECHO_PARAMS })
  const first = await postJson(c, '/api/rpc/echo', headers, body)
  if (first.status !== 200 || JSON.stringify(JSON.parse(first.text)) !== expected) throw new UnexpectedAnswer(`seed-style ${name}: echo ${first.status} ${first.text}`)
  return {
    name,
    async call () {
      const res = await postJson(c, '/api/rpc/echo', headers, body)
      if (res.status !== 200) throw new UnexpectedAnswer(`seed-style ${name}: ${res.status} ${res.text}`)
    },
    async close () {
      await postJson(c, '/api/logout', headers, '{}').catch(() => {})
      await c.close()
    }
  }
}
