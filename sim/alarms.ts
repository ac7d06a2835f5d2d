import dgram from 'node:dgram'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { escapeXml } from '../lib/xml-write.js'
import { encodeXmlDocument, type CharsetSetting } from './xmltext.js'
import type { SimLogger } from './legacy.js'

export interface AlarmOptions {
  level?: string
  source?: string
  message?: string
  /** pause between two alarms; default 0: as fast as the socket takes them */
  intervalMs?: number
}

export interface Subscriber {
  address: string
  port: number
  since: number
}

interface Subscription extends Subscriber {
  expiresAt: number
}

export interface AlarmServerOptions {
  host: string
  port: number
  subscriptionTtlMs: number
  intervalMs: number
  charset: () => CharsetSetting
  logger?: SimLogger | undefined
}

export const ALARM_LEVELS = ['critical', 'major', 'minor', 'warning'] as const

const SAMPLES = [
  { source: 'pump-3', message: '压力过高' },
  { source: 'valve-1', message: '阀门卡滞' },
  { source: 'tank-2', message: '液位过低' },
  { source: 'plc-7', message: 'communication lost' }
] as const

const ELEMENT_NAME = /^[A-Za-z_][\w.-]*$/
// Yielding every so many datagrams lets the kernel drain the send queue and keeps the event loop
// responsive while tens of thousands of alarms go out.
const YIELD_EVERY = 16
const SEND_BUFFER_BYTES = 4 * 1024 * 1024

/**
 * The legacy alarm service: point-to-point UDP. A `SUBSCRIBE` datagram registers its source
 * address and port for `subscriptionTtlMs`; each alarm is one XML document in one datagram.
 */
export class AlarmServer {
  private readonly socket = dgram.createSocket({ type: 'udp4' })
  private readonly subscriptions = new Map<string, Subscription>()
  private readonly stopping = new AbortController()
  private timer: NodeJS.Timeout | undefined
  private lastId = 0
  private sent = 0
  private closed = false
  port = 0

  constructor (private readonly opts: AlarmServerOptions) {
    this.socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo))
    this.socket.on('error', (err) => this.opts.logger?.warn?.({ err }, 'alarm socket error'))
  }

  async listen (): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.socket.once('error', reject)
      this.socket.bind(this.opts.port, this.opts.host, () => {
        this.socket.off('error', reject)
        resolve()
      })
    })
    try {
      this.socket.setSendBufferSize(SEND_BUFFER_BYTES)
    } catch {
      // the kernel may cap it (net.core.wmem_max); alarms still go out, only bursts suffer
    }
    this.port = (this.socket.address() as AddressInfo).port
    if (this.opts.intervalMs > 0) {
      this.timer = setInterval(() => {
        this.sendAlarms(1).catch((err: unknown) => this.opts.logger?.warn?.({ err }, 'timer alarm failed'))
      }, this.opts.intervalMs)
      this.timer.unref()
    }
    return this.port
  }

  get alarmsSent (): number {
    return this.sent
  }

  subscribers (): Subscriber[] {
    const now = Date.now()
    const live: Subscriber[] = []
    for (const [key, s] of this.subscriptions) {
      if (s.expiresAt <= now) {
        this.subscriptions.delete(key)
        this.opts.logger?.info({ address: s.address, port: s.port }, 'alarm subscription lapsed')
      } else {
        live.push({ address: s.address, port: s.port, since: s.since })
      }
    }
    return live
  }

  /** Sends `n` generated alarms; resolves to the number of datagrams sent (alarms × live subscribers). */
  async sendAlarms (n: number, opts: AlarmOptions = {}): Promise<number> {
    const interval = opts.intervalMs ?? 0
    const deliveries: Array<Promise<number>> = []
    for (let i = 0; i < n && !this.closed; i++) {
      if (i > 0 && interval > 0) {
        try {
          await sleep(interval, undefined, { signal: this.stopping.signal })
        } catch {
          break
        }
      } else if (i > 0 && i % YIELD_EVERY === 0) {
        await new Promise((resolve) => setImmediate(resolve))
      }
      const id = ++this.lastId
      const sample = SAMPLES[(id - 1) % SAMPLES.length] ?? SAMPLES[0]
      deliveries.push(this.deliver(this.render({
        id: String(id),
        level: opts.level ?? ALARM_LEVELS[(id - 1) % ALARM_LEVELS.length] ?? 'minor',
        source: opts.source ?? sample.source,
        message: opts.message ?? sample.message,
        time: new Date().toISOString()
      })))
    }
    const counts = await Promise.all(deliveries)
    return counts.reduce((a, b) => a + b, 0)
  }

  /**
   * One alarm with the given fields, in the given order. An `id` is added when missing.
   * Returns how many subscribers it is being sent to.
   */
  sendAlarm (alarm: Record<string, string>): number {
    const fields: Record<string, string> = 'id' in alarm ? { ...alarm } : { id: String(++this.lastId), ...alarm }
    for (const name of Object.keys(fields)) {
      if (!ELEMENT_NAME.test(name)) throw new RangeError(`not an XML element name: ${JSON.stringify(name)}`)
    }
    return this.fire(this.render(fields))
  }

  /** Any bytes to every subscriber (malformed XML, JSON, oversized datagrams …). */
  sendRaw (payload: Buffer | string): number {
    return this.fire(typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload)
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.stopping.abort()
    clearInterval(this.timer)
    this.subscriptions.clear()
    await new Promise<void>((resolve) => this.socket.close(() => resolve()))
  }

  private render (fields: Record<string, string>): Buffer {
    let xml = '<alarm>'
    for (const [name, value] of Object.entries(fields)) xml += `<${name}>${escapeXml(value)}</${name}>`
    return encodeXmlDocument(xml + '</alarm>', this.opts.charset())
  }

  private fire (datagram: Buffer): number {
    const targets = this.subscribers().length
    // deliver never rejects: send errors are logged and left out of the count
    this.deliver(datagram).catch(() => {})
    return targets
  }

  private deliver (datagram: Buffer): Promise<number> {
    const targets = this.closed ? [] : this.subscribers()
    if (targets.length === 0) return Promise.resolve(0)
    return new Promise((resolve) => {
      let pending = targets.length
      let ok = 0
      const done = (err: Error | null): void => {
        if (err === null) {
          ok++
          this.sent++
        } else {
          this.opts.logger?.warn?.({ err }, 'alarm datagram not sent')
        }
        if (--pending === 0) resolve(ok)
      }
      for (const t of targets) {
        try {
          this.socket.send(datagram, t.port, t.address, done)
        } catch (err) {
          done(err as Error)
        }
      }
    })
  }

  private onMessage (msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const text = msg.toString('utf8').trim()
    const key = `${rinfo.address}:${rinfo.port}`
    if (text.startsWith('UNSUBSCRIBE')) {
      if (this.subscriptions.delete(key)) this.opts.logger?.info({ address: rinfo.address, port: rinfo.port }, 'alarm unsubscribe')
    } else if (text.startsWith('SUBSCRIBE')) {
      const now = Date.now()
      const existing = this.subscriptions.get(key)
      if (existing !== undefined && existing.expiresAt > now) {
        existing.expiresAt = now + this.opts.subscriptionTtlMs
      } else {
        this.subscriptions.set(key, { address: rinfo.address, port: rinfo.port, since: now, expiresAt: now + this.opts.subscriptionTtlMs })
        this.opts.logger?.info({ address: rinfo.address, port: rinfo.port }, 'alarm subscribe')
      }
    }
  }
}
