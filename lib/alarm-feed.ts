import { EventEmitter } from 'node:events'
import dgram from 'node:dgram'
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { RingBuffer } from './ring-buffer.js'
import { CharsetDecodeError, decodeXml } from './charset.js'
import { xmlToJson, XmlParseError } from './xml.js'

/**
 * The UDP side of the alarm service (CONTRACT §1): one socket subscribes to the alarm server,
 * re-subscribes periodically, takes datagrams from that server's address only, numbers them
 * 1, 2, 3 … with no gaps, keeps the newest in a ring buffer for replay, and publishes each one
 * serialized once (the WebSocket fan-out, lib/alarm-hub.ts, writes the same bytes to every client).
 */

export interface AlarmFeedOptions {
  host: string
  port: number
  subscribe: string
  unsubscribe: string
  resubscribeMs: number
  bufferSize: number
  charset: string
  maxBytes: number
  logger?: { info: (obj: object, msg: string) => void, warn: (obj: object, msg: string) => void, debug: (obj: object, msg: string) => void }
  /**
   * Cluster mode (lib/alarm-bus.ts): each accepted datagram goes here, decoded, instead of being
   * numbered and buffered in this process; the shared stream numbers it. Without it the feed
   * numbers alarms itself and emits 'alarm'.
   */
  sink?: (datagram: Datagram) => void
}

/** An accepted datagram, before it is numbered. */
export interface Datagram {
  /** Exactly as received: the bus deduplicates on these bytes. */
  readonly bytes: Buffer
  /** The datagram as JSON (the generic XML mapping, parsed JSON, text or `{$base64}`). */
  readonly alarm: unknown
  readonly receivedAt: Date
}

export interface AlarmEntry {
  readonly seq: number
  /** The `{"type":"alarm",…}` frame, serialized once. */
  readonly frame: Buffer
}

/** What `since` finds: the buffered alarms after a seq, and the range no longer buffered. */
export interface Replay {
  gap: { from: number, to: number } | undefined
  entries: AlarmEntry[]
}

export interface AlarmStats {
  received: number
  malformed: number
  dropped: { spoofed: number, oversized: number }
  subscribesSent: number
  subscribeErrors: number
}

export type FeedHealth = { ok: true } | { ok: false, reason: string }

const noopLogger = { info () {}, warn () {}, debug () {} }

export class AlarmFeed extends EventEmitter<{ alarm: [entry: AlarmEntry] }> {
  lastSeq = 0
  lastDatagramAt: number | undefined
  readonly stats: AlarmStats = {
    received: 0,
    malformed: 0,
    dropped: { spoofed: 0, oversized: 0 },
    subscribesSent: 0,
    subscribeErrors: 0
  }

  private readonly opts: AlarmFeedOptions
  private readonly log: NonNullable<AlarmFeedOptions['logger']>
  private readonly buffer: RingBuffer<AlarmEntry>
  private socket: dgram.Socket | undefined
  private serverAddress: string | undefined
  private bound = false
  private lastSubscribeError: string | undefined = 'no subscribe sent yet'
  private timer: NodeJS.Timeout | undefined
  private closed = false
  private lastSpoofWarn = 0

  constructor (opts: AlarmFeedOptions) {
    super()
    this.opts = opts
    this.log = opts.logger ?? noopLogger
    this.buffer = new RingBuffer<AlarmEntry>(opts.bufferSize)
  }

  /** Binds the socket and sends the first subscribe. A missing alarm server is not an error. */
  async start (): Promise<void> {
    const family = isIP(this.opts.host) === 6 ? 'udp6' : 'udp4'
    const socket = dgram.createSocket({ type: family })
    this.socket = socket
    socket.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo.address))
    socket.on('error', (err) => {
      // Asynchronous socket errors (ICMP unreachable and the like) are logged, never fatal.
      this.log.warn({ err: err.message }, 'alarm socket error')
    })
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind(0, () => {
        socket.off('error', reject)
        resolve()
      })
    })
    this.bound = true
    try {
      // A burst of alarms must not overflow the kernel's default receive buffer.
      socket.setRecvBufferSize(4 * 1024 * 1024)
    } catch {}
    await this.subscribe()
    this.timer = setInterval(() => { this.subscribe().catch(() => {}) }, this.opts.resubscribeMs).unref()
  }

  /** The local UDP port alarms arrive on (tests send spoofed datagrams to it). */
  get localPort (): number | undefined {
    return this.bound ? this.socket?.address().port : undefined
  }

  health (): FeedHealth {
    if (!this.bound) return { ok: false, reason: 'alarm socket not bound' }
    if (this.lastSubscribeError !== undefined) return { ok: false, reason: `subscribe failed: ${this.lastSubscribeError}` }
    return { ok: true }
  }

  /** Buffered alarms after `seq`, and the range that is no longer buffered, if any. */
  since (seq: number): Replay {
    const first = this.buffer.firstSeq
    if (seq >= this.lastSeq) return { gap: undefined, entries: [] }
    const entries = this.buffer.after(seq)
    const firstKept = first ?? this.lastSeq + 1
    const gap = seq + 1 < firstKept ? { from: seq + 1, to: firstKept - 1 } : undefined
    return { gap, entries }
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.timer) clearInterval(this.timer)
    const socket = this.socket
    if (socket === undefined) return
    if (this.serverAddress !== undefined) {
      await this.send(this.opts.unsubscribe).catch(() => {})
    }
    await new Promise<void>((resolve) => socket.close(() => resolve()))
    this.bound = false
  }

  private async subscribe (): Promise<void> {
    if (this.closed) return
    try {
      // Resolved on every subscribe: the alarm server may move (DNS) or not exist yet.
      const { address } = await lookup(this.opts.host, { family: isIP(this.opts.host) === 6 ? 6 : 4 })
      this.serverAddress = address
      await this.send(this.opts.subscribe)
      this.stats.subscribesSent++
      this.lastSubscribeError = undefined
    } catch (err) {
      this.stats.subscribeErrors++
      this.lastSubscribeError = (err as Error).message
      this.log.warn({ err: (err as Error).message, host: this.opts.host, port: this.opts.port }, 'alarm subscribe failed; retrying at the next resubscribe')
    }
  }

  private async send (text: string): Promise<void> {
    const socket = this.socket
    const address = this.serverAddress
    if (socket === undefined || address === undefined) throw new Error('alarm socket not ready')
    await new Promise<void>((resolve, reject) => {
      socket.send(text, this.opts.port, address, (err) => { if (err) reject(err); else resolve() })
    })
  }

  private onDatagram (msg: Buffer, from: string): void {
    if (from !== this.serverAddress) {
      this.stats.dropped.spoofed++
      const now = Date.now()
      if (now - this.lastSpoofWarn > 10_000) {
        this.lastSpoofWarn = now
        this.log.warn({ from, dropped: this.stats.dropped.spoofed }, 'alarm datagram from an unexpected address dropped')
      }
      return
    }
    if (msg.length > this.opts.maxBytes) {
      this.stats.dropped.oversized++
      this.log.warn({ bytes: msg.length, limit: this.opts.maxBytes }, 'oversized alarm datagram dropped')
      return
    }
    this.lastDatagramAt = Date.now()
    this.stats.received++
    let alarm: unknown
    try {
      alarm = this.decode(msg)
    } catch (err) {
      if (!(err instanceof CharsetDecodeError)) throw err
      // As text it would carry U+FFFD where the server sent something else, and dropped it would be
      // an alarm lost: it is numbered like any other and passed as its exact bytes.
      this.stats.malformed++
      this.log.warn({ bytes: msg.length, err: err.message }, 'alarm datagram with invalid bytes passed as base64')
      alarm = { $base64: msg.toString('base64') }
    }
    if (this.opts.sink !== undefined) {
      this.opts.sink({ bytes: msg, alarm, receivedAt: new Date() })
      return
    }
    const seq = ++this.lastSeq
    const frame = Buffer.from(JSON.stringify({ type: 'alarm', seq, receivedAt: new Date().toISOString(), alarm }))
    const entry: AlarmEntry = { seq, frame }
    this.buffer.push(entry)
    this.emit('alarm', entry)
  }

  /**
   * XML → the generic mapping; JSON passes; anything else is kept as text and counted. Bytes not
   * valid in the charset throw CharsetDecodeError.
   */
  private decode (msg: Buffer): unknown {
    const text = decodeXml(msg, undefined, this.opts.charset)
    const start = text.trimStart()[0]
    if (start === '<') {
      try {
        return xmlToJson(text, { maxBytes: this.opts.maxBytes })
      } catch (err) {
        if (!(err instanceof XmlParseError)) throw err
      }
    } else if (start === '{' || start === '[') {
      try {
        return JSON.parse(text) as unknown
      } catch {}
    }
    this.stats.malformed++
    this.log.debug({ bytes: msg.length }, 'malformed alarm datagram kept as text')
    return text
  }
}
