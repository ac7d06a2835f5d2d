import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Test } from 'tap'
import WebSocket, { WebSocketServer } from 'ws'
import type { AlarmEvent, AlarmStatus, Gap, Timers } from '../../client/legacy-gateway.js'

/**
 * Plays the gateway's side of CONTRACT §4 on a real `ws` server (port 0), with knobs the real one
 * does not have: drop every connection, restart as a new instance, refuse upgrades, replay
 * carelessly, keep a tiny buffer. `/api/session` answers 200 or 401 as told.
 */
export class FakeGateway {
  instance = 'gw-1'
  seq = 0
  /** Request URLs of every upgrade attempt, in order. */
  readonly urls: string[] = []
  /** Refuse upgrades with this HTTP status (null: accept). */
  refuse: number | null = null
  sessionStatus = 200
  /** Replay the whole buffer whatever `since` says (to test de-duplication). */
  replayIgnoresSince = false
  readonly sockets = new Set<WebSocket>()
  url = ''

  private buffer: Array<{ seq: number, frame: string }> = []
  private readonly server: http.Server
  private readonly wss = new WebSocketServer({ noServer: true })

  constructor (private readonly bufferSize = 1000) {
    this.server = http.createServer((req, res) => { this.onRequest(req, res) })
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
      this.urls.push(req.url ?? '')
      if (this.refuse !== null) {
        socket.end(`HTTP/1.1 ${this.refuse} ${http.STATUS_CODES[this.refuse] ?? ''}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`)
        return
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => { this.onConnection(ws, req) })
    })
  }

  static async start (t: Test, bufferSize?: number): Promise<FakeGateway> {
    const gw = new FakeGateway(bufferSize)
    await new Promise<void>((resolve) => gw.server.listen(0, '127.0.0.1', resolve))
    gw.url = `http://127.0.0.1:${(gw.server.address() as AddressInfo).port}`
    t.teardown(() => gw.close())
    return gw
  }

  /** Numbers and broadcasts n alarms; ids are `${instance}/${seq}`. */
  publish (n: number): void {
    for (let i = 0; i < n; i++) {
      const seq = ++this.seq
      const frame = JSON.stringify({
        type: 'alarm',
        seq,
        receivedAt: new Date().toISOString(),
        alarm: { alarm: { id: `${this.instance}/${seq}`, level: 'minor', source: 'pump-3', message: '压力过高' } }
      })
      this.buffer.push({ seq, frame })
      if (this.buffer.length > this.bufferSize) this.buffer.shift()
      for (const ws of this.sockets) ws.send(frame)
    }
  }

  /** Sends a frame to every open socket as is. */
  sendRaw (data: string | Buffer): void {
    for (const ws of this.sockets) ws.send(data)
  }

  /** Cuts every WebSocket without a close frame (a crash, a proxy timeout, a network loss). */
  drop (): void {
    for (const ws of this.sockets) ws.terminate()
    this.sockets.clear()
  }

  /** A new gateway process: new instance, seq from 1, empty buffer. */
  restart (instance: string): void {
    this.drop()
    this.instance = instance
    this.seq = 0
    this.buffer = []
  }

  endSession (state: string): void {
    for (const ws of this.sockets) {
      ws.send(JSON.stringify({ type: 'session', state }))
      ws.close(1000, `session ${state}`)
    }
    this.sockets.clear()
  }

  async close (): Promise<void> {
    this.drop()
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private onConnection (ws: WebSocket, req: http.IncomingMessage): void {
    ws.send(JSON.stringify({ type: 'hello', instance: this.instance, lastSeq: this.seq }))
    const raw = new URL(req.url ?? '/', 'http://x').searchParams.get('since')
    if (raw !== null) {
      const since = this.replayIgnoresSince ? 0 : Number(raw)
      const oldest = this.buffer[0]?.seq ?? this.seq + 1
      if (since + 1 < oldest && since < this.seq) {
        ws.send(JSON.stringify({ type: 'gap', from: since + 1, to: oldest - 1 }))
      }
      for (const entry of this.buffer) if (entry.seq > since) ws.send(entry.frame)
    }
    this.sockets.add(ws)
    ws.on('close', () => this.sockets.delete(ws))
  }

  private onRequest (req: http.IncomingMessage, res: http.ServerResponse): void {
    if (req.url === '/api/session' && this.sessionStatus === 200) {
      const now = new Date().toISOString()
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ user: 'demo', connected: true, createdAt: now, lastActivityAt: now }))
      return
    }
    const status = req.url === '/api/session' ? this.sessionStatus : 404
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ statusCode: status, code: status === 401 ? 'SESSION_LOST' : 'NOT_FOUND', error: http.STATUS_CODES[status], message: 'The session ended (the connection to the legacy server closed): log in again' }))
  }
}

/** Timers the test fires by hand: the client's backoff never waits for real. */
export class FakeTimers implements Timers {
  /** Every delay the client asked for, in order. */
  readonly delays: number[] = []
  private readonly pending = new Map<number, { fn: () => void, ms: number }>()
  private next = 1

  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = this.next++
    this.pending.set(id, { fn, ms })
    this.delays.push(ms)
    return id
  }

  clearTimeout = (handle: unknown): void => {
    this.pending.delete(handle as number)
  }

  get size (): number {
    return this.pending.size
  }

  /** Runs the one pending timer (there is never more than one); returns its delay. */
  fire (): number {
    const [first, ...rest] = [...this.pending]
    if (first === undefined || rest.length > 0) throw new Error(`expected one pending timer, found ${this.pending.size}`)
    this.pending.delete(first[0])
    first[1].fn()
    return first[1].ms
  }
}

/** What a subscription reported, in order. */
export interface Recorded {
  alarms: AlarmEvent[]
  statuses: AlarmStatus[]
  gaps: Gap[]
  ended: string[]
}

export function recorder (): Recorded & { handlers: { onAlarm: (a: AlarmEvent) => void, onStatus: (s: AlarmStatus) => void, onGap: (g: Gap) => void, onSessionEnd: (s: string) => void } } {
  const r: Recorded = { alarms: [], statuses: [], gaps: [], ended: [] }
  return {
    ...r,
    handlers: {
      onAlarm: (a) => { r.alarms.push(a) },
      onStatus: (s) => { r.statuses.push(s) },
      onGap: (g) => { r.gaps.push(g) },
      onSessionEnd: (s) => { r.ended.push(s) }
    }
  }
}

/** Polls (with real timers) until `cond` holds. */
export async function until (what: string, cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** `ws` speaks the browser's WebSocket API (onopen/onmessage/onclose, text data as strings). */
export const NodeWebSocket = WebSocket as unknown as typeof globalThis.WebSocket
