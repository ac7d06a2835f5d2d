import http from 'node:http'
import type { FaultMode, Simulator } from './legacy.js'

const MAX_CONTROL_BODY = 1024 * 1024

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type Body = Record<string, Json>

class ControlError extends Error {
  constructor (readonly statusCode: number, message: string) {
    super(message)
  }
}

interface Route {
  method: 'GET' | 'POST' | 'DELETE'
  path: string
  does: string
  handle: (body: Body, url: URL) => unknown
}

function routes (sim: Simulator): Route[] {
  return [
    { method: 'GET', path: '/', does: 'this list', handle: () => null },
    { method: 'GET', path: '/state', does: 'running, sockets, subscribers, alarmsSent, ledger length, fault, charset', handle: () => sim.state() },
    {
      method: 'GET',
      path: '/ledger',
      does: 'the request ledger (?since=SEQ: only later entries)',
      handle: (_body, url) => {
        const since = optionalInt(url.searchParams.get('since') ?? undefined, 'since') ?? 0
        return sim.ledger.filter((e) => e.seq > since)
      }
    },
    {
      method: 'DELETE',
      path: '/ledger',
      does: 'clear the ledger',
      handle: () => {
        sim.clearLedger()
        return { cleared: true }
      }
    },
    {
      method: 'POST',
      path: '/kill',
      does: '{"user":"alice"} or {"socket":3}: destroy those sockets',
      handle: (body) => {
        if (typeof body.user === 'string') return { killed: sim.killUser(body.user) }
        if (typeof body.socket === 'number') return { killed: sim.killSocket(body.socket) ? 1 : 0 }
        throw new ControlError(400, 'expected {"user": string} or {"socket": number}')
      }
    },
    {
      method: 'POST',
      path: '/stop',
      does: 'crash the RPC server: drop every socket, stop listening',
      handle: async () => {
        await sim.stop()
        return { running: sim.running }
      }
    },
    {
      method: 'POST',
      path: '/start',
      does: 'listen again on the same port',
      handle: async () => {
        await sim.start()
        return { running: sim.running }
      }
    },
    {
      method: 'POST',
      path: '/fault',
      does: '{"mode":"hang|malformed|slow|entity|truncated|close|none","count"?,"delayMs"?}',
      handle: (body) => {
        if (typeof body.mode !== 'string') throw new ControlError(400, 'mode is required')
        sim.setFault({
          mode: body.mode as FaultMode,
          count: optionalNumber(body.count, 'count'),
          delayMs: optionalNumber(body.delayMs, 'delayMs')
        })
        return { fault: sim.state().fault }
      }
    },
    {
      method: 'POST',
      path: '/charset',
      does: '{"charset":"gbk","declare"?:true,"header"?:false}',
      handle: (body) => {
        if (typeof body.charset !== 'string') throw new ControlError(400, 'charset is required')
        sim.setCharset(body.charset, { declare: optionalBoolean(body.declare, 'declare'), header: optionalBoolean(body.header, 'header') })
        return { charset: sim.state().charset }
      }
    },
    {
      method: 'POST',
      path: '/keepalive-hint',
      does: '{"seconds":2} or {"seconds":null}: advertise Keep-Alive: timeout=N (the socket stays open anyway)',
      handle: (body) => {
        const seconds = body.seconds ?? null
        if (seconds !== null && typeof seconds !== 'number') throw new ControlError(400, 'seconds must be a number or null')
        sim.setKeepAliveHint(seconds)
        return { keepAliveHint: seconds }
      }
    },
    {
      method: 'POST',
      path: '/alarms',
      does: '{"count":N,"level"?,"source"?,"message"?,"intervalMs"?}: generated alarms to every subscriber',
      handle: async (body) => {
        const count = optionalNumber(body.count, 'count') ?? 1
        if (!Number.isInteger(count) || count < 0 || count > 1_000_000) throw new ControlError(400, 'count must be an integer in 0..1000000')
        const sent = await sim.sendAlarms(count, {
          level: optionalString(body.level, 'level'),
          source: optionalString(body.source, 'source'),
          message: optionalString(body.message, 'message'),
          intervalMs: optionalNumber(body.intervalMs, 'intervalMs')
        })
        return { sent }
      }
    },
    {
      method: 'POST',
      path: '/alarm',
      does: '{"level":"critical","source":"pump-3","message":"…",…}: one custom alarm',
      handle: (body) => {
        const alarm: Record<string, string> = {}
        for (const [key, value] of Object.entries(body)) {
          if (value === null || typeof value === 'object') throw new ControlError(400, `alarm field ${key} must be a string`)
          alarm[key] = String(value)
        }
        return { sent: sim.sendAlarm(alarm) }
      }
    },
    {
      method: 'POST',
      path: '/raw-alarm',
      does: '{"text":"…"} or {"base64":"…"}: one raw datagram to every subscriber',
      handle: (body) => {
        if (typeof body.text === 'string') return { sent: sim.sendRawAlarm(body.text) }
        if (typeof body.base64 === 'string') return { sent: sim.sendRawAlarm(Buffer.from(body.base64, 'base64')) }
        throw new ControlError(400, 'expected {"text": string} or {"base64": string}')
      }
    },
    {
      method: 'POST',
      path: '/reset',
      does: 'fault none, charset utf-8, keep-alive hint off, ledger cleared',
      handle: () => {
        sim.reset()
        return sim.state()
      }
    }
  ]
}

/**
 * The simulator's remote control: JSON in and out, for tests in other processes, the chaos run,
 * browser end-to-end tests and humans with curl. Not meant to be exposed beyond loopback.
 */
export function createControlServer (sim: Simulator): http.Server {
  const table = routes(sim)
  const index = table.map(({ method, path, does }) => ({ method, path, does }))

  return http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://control')
    const matching = table.filter((r) => r.path === url.pathname)
    const route = matching.find((r) => r.method === req.method)
    handle().then(
      (value) => reply(res, 200, value),
      (err: unknown) => {
        if (err instanceof ControlError) return reply(res, err.statusCode, { error: err.message })
        if (err instanceof RangeError || err instanceof TypeError) return reply(res, 400, { error: err.message })
        reply(res, 500, { error: err instanceof Error ? err.message : String(err) })
      }
    )

    async function handle (): Promise<unknown> {
      if (matching.length === 0) throw new ControlError(404, `no such route: ${url.pathname}`)
      if (route === undefined) {
        res.setHeader('allow', matching.map((r) => r.method).join(', '))
        throw new ControlError(405, `${req.method ?? '?'} not allowed on ${url.pathname}`)
      }
      const body = await readJson(req)
      if (route.path === '/') return index
      return await route.handle(body, url)
    }
  })
}

async function readJson (req: http.IncomingMessage): Promise<Body> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_CONTROL_BODY) throw new ControlError(413, 'body too large')
    chunks.push(chunk)
  }
  const text = Buffer.concat(chunks).toString('utf8').trim()
  if (text === '') return {}
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new ControlError(400, 'body is not valid JSON')
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ControlError(400, 'body must be a JSON object')
  return parsed as Body
}

function reply (res: http.ServerResponse, status: number, value: unknown): void {
  const body = Buffer.from(JSON.stringify(value ?? null), 'utf8')
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length })
  res.end(body)
}

function optionalNumber (value: Json | undefined, name: string): number | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'number') throw new ControlError(400, `${name} must be a number`)
  return value
}

function optionalInt (value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value)) throw new ControlError(400, `${name} must be a non-negative integer`)
  return Number(value)
}

function optionalString (value: Json | undefined, name: string): string | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string') throw new ControlError(400, `${name} must be a string`)
  return value
}

function optionalBoolean (value: Json | undefined, name: string): boolean | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'boolean') throw new ControlError(400, `${name} must be a boolean`)
  return value
}
