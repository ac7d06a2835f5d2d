import { createHash, randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { createClient } from 'redis'
import type { AlarmEntry, Datagram, FeedHealth, Replay } from './alarm-feed.js'

/**
 * Cluster mode (ALARM_BUS_URL): one Redis stream is the alarm log of every gateway instance.
 *
 * - Ingest (ALARM_INGEST): each datagram the UDP feed accepts is appended by one Lua script, one
 *   atomic step: dropped when the same bytes were appended within ALARM_DEDUP_MS (so N ingesting
 *   instances store each alarm once), else numbered with the next cluster-wide seq and added to
 *   the stream under the entry id `<seq>-0`, trimmed to ALARM_BUFFER entries.
 * - Read: every instance follows the stream (XREAD BLOCK on a connection of its own) and keeps the
 *   last ALARM_BUFFER entries in memory, a mirror of the stream from which `hello` and `?since=`
 *   are answered synchronously (lib/alarm-hub.ts needs that: replay and joining the live set happen
 *   in one tick). At (re)connection the mirror is (re)loaded from the stream.
 * - Identity: a random id kept in Redis beside the stream (`<stream>:meta`, with the seq counter)
 *   names the seq space: `hello.instance` is `<stream>@<id>`, the same on every instance. A stream
 *   lost with its meta (FLUSHALL, a Redis without persistence restarted) gets a new id; readers see
 *   it, drop their mirror and restart their clients (close 1012), who then see the new instance.
 * - Redis unreachable: datagrams wait in a bounded queue (ALARM_BUFFER) and are appended in order
 *   once it is back; beyond the bound they are counted and appended as one gap entry (it takes the
 *   seqs of the alarms lost, and readers send it as a `gap` frame), so nothing is lost silently.
 *   Entries trimmed away while a reader was disconnected become a `gap` frame too.
 *
 * Uses only Redis 5+ stream commands and Redis 6.2+ XADD/XRANGE forms (Debian's 7.0 in tests).
 * Not for Redis Cluster: the stream, its meta and its dedup keys are separate keys (one primary,
 * with Sentinel or a managed service for failover: docs/OPERATIONS.md).
 */

export interface AlarmBusOptions {
  /** redis:// or rediss:// URL (ALARM_BUS_URL). */
  url: string
  /** The stream's key (ALARM_STREAM). */
  stream: string
  /** Entries kept in the stream and in each instance's mirror (ALARM_BUFFER). */
  bufferSize: number
  /** ALARM_DEDUP_MS; 0 turns deduplication off. */
  dedupMs: number
  /** Whether this instance appends (ALARM_INGEST); readers never open the second connection. */
  ingest: boolean
  /** Datagrams waiting for Redis beyond this are lost (counted, and stored as a gap). */
  queueMax?: number
  /** XREAD BLOCK; also how soon an idle reader notices a new stream identity. */
  blockMs?: number
  /** Names its connections in Redis's CLIENT LIST: `<name>:reader`, `<name>:writer`. */
  clientName?: string
  logger?: { info: (obj: object, msg: string) => void, warn: (obj: object, msg: string) => void }
}

export interface AlarmBusStats {
  /** Datagrams appended to the stream by this instance. */
  appended: number
  /** Datagrams another instance (or this one) had already appended within ALARM_DEDUP_MS. */
  deduplicated: number
  /** Datagrams that could not be stored (the queue was full); they went into the stream as a gap. */
  lost: number
  /** Failed Redis commands and connection errors. */
  errors: number
  /** Times the stream's identity changed under a running reader (clients restarted). */
  restarts: number
}

interface BusEntry extends AlarmEntry {
  /** The first seq it covers: `seq` for an alarm, the gap's `from` for a gap. */
  readonly from: number
}

type QueueItem = { kind: 'alarm', lost: 0, key: string, alarm: string, at: string } | { kind: 'gap', lost: number, at: string }

const noopLogger = { info () {}, warn () {} }

// Makes sure the stream has an identity; a stream without one (its meta key was lost) is from an
// old seq space and is deleted. KEYS: stream, meta. ARGV[1]: the id to take if there is none.
const PRELUDE = `
local sid = redis.call('HGET', KEYS[2], 'id')
if not sid then
  sid = ARGV[1]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'id', sid, 'seq', 0)
end
`
const IDENTITY = PRELUDE + `
return {sid, redis.call('HGET', KEYS[2], 'seq')}
`
// KEYS: stream, meta, dedup key. ARGV: id, maxlen, dedup ms, receivedAt, alarm JSON, lost (0 for
// an alarm; n > 0 for a gap entry that takes n seqs). Returns {id, seq}; seq 0: a duplicate.
const APPEND = PRELUDE + `
local lost = tonumber(ARGV[6])
if lost == 0 and tonumber(ARGV[3]) > 0 then
  if not redis.call('SET', KEYS[3], '1', 'PX', ARGV[3], 'NX') then return {sid, 0} end
end
local n = 1
if lost > 0 then n = lost end
local seq = redis.call('HINCRBY', KEYS[2], 'seq', n)
local id = string.format('%d-0', seq)
if lost > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], id, 's', sid, 'at', ARGV[4], 'lost', ARGV[6])
else
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], id, 's', sid, 'at', ARGV[4], 'a', ARGV[5])
end
return {sid, seq}
`

const sha1 = (text: string | Buffer): string => createHash('sha1').update(text).digest('hex')
const SCRIPTS = { identity: { text: IDENTITY, sha: sha1(IDENTITY) }, append: { text: APPEND, sha: sha1(APPEND) } }

// Backoff for commands and Redis's own reconnection: 100 ms doubling to 1 s, with jitter so that
// a fleet does not reconnect in lockstep. Kept short on purpose: after an outage every ingester
// appends what it queued as soon as it is back, and the copies of one datagram are deduplicated
// only if they arrive within ALARM_DEDUP_MS of each other.
function backoff (attempt: number): number {
  const ceiling = Math.min(100 * 2 ** Math.min(attempt, 10), 1000)
  return Math.floor(ceiling / 2 + Math.random() * ceiling / 2)
}

type Client = ReturnType<typeof createClient>

function errorMessage (err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return errorMessage(err.errors[0])
  const e = err as NodeJS.ErrnoException
  return e.code ?? e.message ?? String(err)
}

export class AlarmBus extends EventEmitter<{ alarm: [entry: AlarmEntry], restart: [] }> {
  readonly stats: AlarmBusStats = { appended: 0, deduplicated: 0, lost: 0, errors: 0, restarts: 0 }
  readonly shared = true
  lastSeq = 0

  private readonly opts: Required<Omit<AlarmBusOptions, 'logger'>>
  private readonly log: NonNullable<AlarmBusOptions['logger']>
  private readonly metaKey: string
  private readonly reader: Client
  private readonly writer: Client | undefined
  private readonly abort = new AbortController()
  /** The mirror: entries in seq order, the oldest at `head`. */
  private entries: BusEntry[] = []
  private head = 0
  private streamId: string | undefined
  private synced = false
  private readerUp = false
  private lastError: string | undefined = 'not connected yet'
  private lastIdentityCheck = 0
  private readonly queue: QueueItem[] = []
  private queued = 0
  private draining = false
  private lastWarn = 0
  private closed = false
  private loop: Promise<void> | undefined

  constructor (opts: AlarmBusOptions) {
    super()
    this.opts = {
      url: opts.url,
      stream: opts.stream,
      bufferSize: opts.bufferSize,
      dedupMs: opts.dedupMs,
      ingest: opts.ingest,
      queueMax: opts.queueMax ?? opts.bufferSize,
      blockMs: opts.blockMs ?? 2000,
      clientName: opts.clientName ?? 'legacy-gateway'
    }
    this.log = opts.logger ?? noopLogger
    this.metaKey = `${opts.stream}:meta`
    const client = createClient({
      url: opts.url,
      name: `${this.opts.clientName}:reader`,
      // Commands fail at once while disconnected instead of queueing without bound: the queue of
      // datagrams below is the only one, and it is bounded.
      disableOfflineQueue: true,
      socket: { connectTimeout: 5000, reconnectStrategy: (retries: number) => backoff(retries) }
    })
    this.reader = client
    this.writer = opts.ingest ? client.duplicate({ name: `${this.opts.clientName}:writer` }) : undefined
    for (const [role, c] of [['reader', this.reader], ['writer', this.writer]] as const) {
      // An 'error' without a listener would crash the process; every one is counted.
      c?.on('error', (err: unknown) => this.onError(role, err))
      c?.on('ready', () => {
        this.log.info({ role, stream: opts.stream }, 'alarm bus connected')
        if (role === 'writer') this.drain()
      })
    }
  }

  /** `<stream>@<id>`: the seq space, the same on every instance of the cluster. */
  get instance (): string | undefined {
    return this.streamId === undefined ? undefined : `${this.opts.stream}@${this.streamId}`
  }

  /** False until the stream has been read once: `hello` cannot be answered before. */
  get ready (): boolean {
    return this.streamId !== undefined
  }

  /** 1 when every connection this instance needs is up and the mirror follows the stream. */
  get connected (): boolean {
    return this.readerUp && this.synced && (this.writer === undefined || this.writer.isReady)
  }

  /** Datagrams waiting for Redis. */
  get pending (): number {
    return this.queued
  }

  /** Starts connecting (in the background: a Redis down at start is not an error) and reading. */
  start (): void {
    const connect = (c: Client | undefined): void => {
      // connect() retries by itself (reconnectStrategy); it settles once connected or destroyed.
      c?.connect().catch(() => {})
    }
    connect(this.reader)
    connect(this.writer)
    this.loop = this.readLoop()
  }

  health (): FeedHealth {
    if (!this.readerUp) return { ok: false, reason: `alarm bus unreachable (${this.lastError ?? 'connecting'})` }
    if (!this.synced) return { ok: false, reason: 'alarm bus: stream not read yet' }
    if (this.writer !== undefined && !this.writer.isReady) return { ok: false, reason: `alarm bus: cannot append (${this.lastError ?? 'connecting'})` }
    return { ok: true }
  }

  /** Queues one datagram for the stream (the UDP feed's sink). */
  append (datagram: Datagram): void {
    if (this.closed || this.writer === undefined) return
    const at = datagram.receivedAt.toISOString()
    if (this.queued >= this.opts.queueMax) {
      // Counted into one trailing gap entry: appended after what is queued, it takes the seqs these
      // alarms would have had, in their place in time.
      this.stats.lost++
      const last = this.queue.at(-1)
      if (last?.kind === 'gap') last.lost++
      else this.queue.push({ kind: 'gap', lost: 1, at })
      this.warn({ lost: this.stats.lost, queued: this.queued }, 'alarm bus queue full: alarm lost, stored as a gap')
      return
    }
    const key = `${this.opts.stream}:dedup:${sha1(datagram.bytes)}`
    this.queue.push({ kind: 'alarm', lost: 0, key, alarm: JSON.stringify(datagram.alarm), at })
    this.queued++
    this.drain()
  }

  since (seq: number): Replay {
    if (seq >= this.lastSeq) return { gap: undefined, entries: [] }
    const entries = this.after(seq)
    const firstKept = entries[0]?.from ?? this.lastSeq + 1
    const gap = seq + 1 < firstKept ? { from: seq + 1, to: firstKept - 1 } : undefined
    return { gap, entries }
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.abort.abort()
    if (this.queued > 0) this.log.warn({ queued: this.queued }, 'alarm bus closed with datagrams not yet appended')
    // destroy, not close: a blocked XREAD or a Redis that does not answer must not hold shutdown.
    for (const c of [this.reader, this.writer]) {
      try {
        if (c?.isOpen === true) c.destroy()
      } catch {}
    }
    await this.loop?.catch(() => {})
  }

  private async readLoop (): Promise<void> {
    let attempt = 0
    while (!this.closed) {
      try {
        if (!this.reader.isReady) {
          // The client reconnects by itself (with backoff); this only notices soon when it has.
          this.readerUp = false
          this.synced = false
          await sleep(200, undefined, { signal: this.abort.signal }).catch(() => {})
          continue
        }
        if (!this.synced || Date.now() - this.lastIdentityCheck >= this.opts.blockMs) await this.checkIdentity()
        this.readerUp = true
        const reply = await this.reader.sendCommand([
          'XREAD', 'COUNT', '1000', 'BLOCK', String(this.opts.blockMs), 'STREAMS', this.opts.stream, `${this.lastSeq}-0`
        ])
        attempt = 0
        this.readerUp = true
        const stream = (reply as unknown as Array<[string, RawEntry[]]> | null)?.[0]
        if (stream !== undefined) this.take(stream[1])
      } catch (err) {
        if (this.closed) return
        this.onError('reader', err)
        this.readerUp = false
        this.synced = false
        await sleep(backoff(attempt++), undefined, { signal: this.abort.signal }).catch(() => {})
      }
    }
  }

  /** Reads the stream's identity; a new one (or the first) reloads the mirror from the stream. */
  private async checkIdentity (): Promise<void> {
    const [sid, seq] = await this.script(this.reader, 'identity', [this.opts.stream, this.metaKey], [randomBytes(8).toString('hex')]) as [string, string | number]
    this.lastIdentityCheck = Date.now()
    if (sid === this.streamId) {
      this.synced = true
      return
    }
    const raw = await this.reader.sendCommand(['XREVRANGE', this.opts.stream, '+', '-', 'COUNT', String(this.opts.bufferSize)]) as RawEntry[]
    const previous = this.streamId
    this.entries = []
    this.head = 0
    this.lastSeq = 0
    this.streamId = sid
    this.synced = true
    const loaded = raw.reverse()
    const first = loaded[0]
    if (first !== undefined) {
      // What was trimmed before this reader came is no gap to announce: since() names it to whoever asks.
      const lost = Number(fieldMap(first[1]).lost ?? 0)
      this.lastSeq = seqOf(first[0]) - Math.max(lost, 1)
    }
    this.take(loaded, false)
    this.lastSeq = Math.max(this.lastSeq, Number(seq))
    if (previous !== undefined) {
      this.stats.restarts++
      this.log.warn({ stream: this.opts.stream, previous, now: sid, lastSeq: this.lastSeq }, 'alarm stream has a new identity (it was lost or flushed): clients restart')
      this.emit('restart')
    } else {
      this.log.info({ stream: this.opts.stream, instance: this.instance, lastSeq: this.lastSeq }, 'alarm stream read')
    }
  }

  /** Adds entries read from the stream to the mirror and publishes them. */
  private take (raw: RawEntry[], publish = true): void {
    for (const [id, fields] of raw) {
      const seq = seqOf(id)
      if (seq <= this.lastSeq) continue
      const f = fieldMap(fields)
      if (f.s !== this.streamId) {
        // Another seq space under the same key: the identity check reloads the mirror.
        this.synced = false
        return
      }
      const lost = f.lost === undefined ? 0 : Number(f.lost)
      const from = lost > 0 ? seq - lost + 1 : seq
      // Entries trimmed away before this reader got to them (it was disconnected, or too slow).
      if (from > this.lastSeq + 1) this.push(gapEntry(this.lastSeq + 1, from - 1), publish)
      this.push(lost > 0 ? gapEntry(Math.max(from, this.lastSeq + 1), seq) : alarmEntry(seq, f.at ?? '', f.a ?? 'null'), publish)
    }
  }

  private push (entry: BusEntry, publish: boolean): void {
    this.entries.push(entry)
    this.lastSeq = entry.seq
    if (this.entries.length - this.head > this.opts.bufferSize) this.head++
    // Compacted now and then rather than shifted every time.
    if (this.head > this.opts.bufferSize) {
      this.entries = this.entries.slice(this.head)
      this.head = 0
    }
    if (publish) this.emit('alarm', entry)
  }

  /** Mirror entries ending after `seq`, oldest first (binary search: gap entries skip seqs). */
  private after (seq: number): BusEntry[] {
    let lo = this.head
    let hi = this.entries.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((this.entries[mid] as BusEntry).seq > seq) hi = mid
      else lo = mid + 1
    }
    return this.entries.slice(lo)
  }

  /** Appends the queue in order, one batch at a time; on failure waits and tries again. */
  private drain (): void {
    if (this.draining || this.closed) return
    const writer = this.writer
    if (writer === undefined || !writer.isReady) return
    this.draining = true
    const run = async (): Promise<void> => {
      let attempt = 0
      while (this.queue.length > 0 && !this.closed) {
        // Sent together, so pipelined on the one connection, and applied in this order.
        const batch = this.queue.slice(0, 64)
        const results = await Promise.allSettled(batch.map((item) => this.appendOne(writer, item)))
        let done = 0
        for (const r of results) {
          if (r.status !== 'fulfilled') break
          done++
        }
        const taken = this.queue.splice(0, done)
        this.queued -= taken.filter(item => item.kind === 'alarm').length
        if (done < batch.length) {
          const failure = results[done] as PromiseRejectedResult
          this.onError('writer', failure.reason)
          if (!writer.isReady) return // the 'ready' event drains again
          await sleep(backoff(attempt++), undefined, { signal: this.abort.signal }).catch(() => {})
        } else {
          attempt = 0
        }
      }
    }
    run().finally(() => { this.draining = false }).catch(() => {})
  }

  private async appendOne (writer: Client, item: QueueItem): Promise<void> {
    const keys = [this.opts.stream, this.metaKey, item.kind === 'alarm' ? item.key : `${this.opts.stream}:dedup:-`]
    const args = [randomBytes(8).toString('hex'), String(this.opts.bufferSize), String(this.opts.dedupMs), item.at, item.kind === 'alarm' ? item.alarm : '', String(item.lost)]
    const [, seq] = await this.script(writer, 'append', keys, args) as [string, number]
    if (item.kind === 'gap') return
    if (seq === 0) this.stats.deduplicated++
    else this.stats.appended++
  }

  /** EVALSHA, loading the script (EVAL) when Redis does not have it: after a restart, say. */
  private async script (c: Client, name: keyof typeof SCRIPTS, keys: string[], args: string[]): Promise<unknown> {
    const { sha, text } = SCRIPTS[name]
    try {
      return await c.sendCommand(['EVALSHA', sha, String(keys.length), ...keys, ...args])
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err
      return await c.sendCommand(['EVAL', text, String(keys.length), ...keys, ...args])
    }
  }

  private onError (role: string, err: unknown): void {
    this.stats.errors++
    this.lastError = errorMessage(err)
    this.warn({ role, err: this.lastError }, 'alarm bus error')
  }

  /** At most one warning per 5 s: a Redis that is down must not flood the log. */
  private warn (obj: object, msg: string): void {
    const now = Date.now()
    if (now - this.lastWarn < 5000) return
    this.lastWarn = now
    this.log.warn(obj, msg)
  }
}

type RawEntry = [string, string[]]

function seqOf (id: string): number {
  return Number(id.slice(0, id.indexOf('-')))
}

function fieldMap (fields: string[]): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {}
  for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i] as string] = fields[i + 1]
  return out
}

function gapEntry (from: number, to: number): BusEntry {
  return { seq: to, from, frame: Buffer.from(JSON.stringify({ type: 'gap', from, to })) }
}

function alarmEntry (seq: number, receivedAt: string, json: string): BusEntry {
  let alarm: unknown
  try {
    alarm = JSON.parse(json)
  } catch {
    alarm = json
  }
  return { seq, from: seq, frame: Buffer.from(JSON.stringify({ type: 'alarm', seq, receivedAt, alarm })) }
}
