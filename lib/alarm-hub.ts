import { noticeFor, type EndReason } from './sessions.js'
import type { AlarmEntry, Replay } from './alarm-feed.js'

/**
 * The alarm fan-out (CONTRACT §4): the open alarm WebSockets, indexed by session, and everything
 * written to them. A client joins with `hello` (and, with `?since=`, a `gap` frame and the replay
 * of what the feed still buffers); alarms go out in batches, one corked write per client per
 * batch; a client that stops reading is cut off, one that stops answering pings is terminated;
 * when its session ends it gets the alarms published before the end, then its `session` notice.
 *
 * Framework-free: it types a socket by what it uses of one (`ws`'s WebSocket fits), so that its
 * unit tests drive it with fakes. plugins/alarms.ts wires it to the feed and the session store.
 */

/** What the hub uses of a WebSocket. */
export interface AlarmSocket {
  /** Bytes queued and not yet handed to the kernel. */
  readonly bufferedAmount: number
  send: (data: Buffer | string, options: { binary: false }) => void
  close: (code: number, reason: string) => void
  terminate: () => void
  ping: () => void
  on: (event: 'pong' | 'close', listener: () => void) => unknown
}

/**
 * The byte stream the WebSocket writes to (for `ws` in Fastify, `request.raw.socket`). `ws` has no
 * public cork; corking its socket for a batch turns the batch's frames into one write.
 */
export interface Wire {
  cork: () => void
  uncork: () => void
}

/** What the hub needs to know of a session: whether it has ended. */
export interface HubSession {
  readonly ended: EndReason | undefined
}

/** The session store's side: a session with an open WebSocket is held, so it never goes idle. */
export interface SessionHolder<S> {
  hold: (session: S) => void
  release: (session: S) => void
}

/** Where `hello` reads the last seq and `?since=` its replay (the alarm feed, or the bus). */
export interface AlarmReplay {
  readonly lastSeq: number
  since: (seq: number) => Replay
  /**
   * The seq space's name when the replay has its own (the bus: the shared stream's), which then
   * replaces the hub's `instance` option in `hello`; it changes only with a `restart()`.
   */
  readonly instance?: string | undefined
  /**
   * The seq space is shared with other processes (the bus): a `since` above `lastSeq` is a seq
   * another instance has already delivered and this one has not read yet, so it is not sent again.
   */
  readonly shared?: boolean
  /** False while the replay cannot say where its seq space stands (the bus before its first read). */
  readonly ready?: boolean
}

export interface AlarmHubOptions<S> {
  /** Names the seq space in `hello`: a client seeing a new one knows seq started again. */
  instance: string
  /** null without an alarm feed: `hello` says lastSeq 0 and there is nothing to replay. */
  replay: AlarmReplay | null
  sessions: SessionHolder<S>
  /** WS_MAX_BUFFERED_BYTES: unsent data past which a client is cut off (1013). */
  maxBufferedBytes: number
  /** WS_PING_MS: a client that has not answered the previous ping by the next is terminated. */
  pingMs: number
}

export interface JoinRequest<S> {
  socket: AlarmSocket
  wire: Wire
  session: S
  /** `?since=`: replay what is buffered after this seq. */
  since?: number | undefined
}

export interface AlarmHubStats {
  /** Alarm frames written, one per alarm and client. */
  forwarded: number
  /** Clients cut off for not reading (metrics: `alarms_dropped_total{reason="slow_client"}`). */
  cutOff: number
}

interface Client<S> {
  readonly socket: AlarmSocket
  readonly wire: Wire
  readonly session: S
  alive: boolean
  /** The last seq this client has been sent or deliberately not sent (before it joined). */
  after: number
  /**
   * Bytes of its ?since= replay: a reading client may be that far above WS_MAX_BUFFERED_BYTES
   * until it has caught up (the replayed frames are the ring buffer's own, so this costs nothing).
   */
  slack: number
}

// Alarms are fanned out in small batches: one write (corked) per client per batch instead of one
// per client per alarm. The socket writes dominate the fan-out (bench/alarms.ts, strace: one
// writev per client per alarm); a 10 ms window costs at most 10 ms of latency.
export const FLUSH_MS = 10
export const FLUSH_AT = 64
// A batch stays well under WS_MAX_BUFFERED_BYTES, so one batch can never look like a slow client.
export const FLUSH_BYTES = 64 * 1024
// The close frame of a cut-off client waits behind the data it is not reading.
const TERMINATE_AFTER_MS = 1000

const TEXT = { binary: false } as const

export class AlarmHub<S extends HubSession> {
  readonly stats: AlarmHubStats = { forwarded: 0, cutOff: 0 }
  private readonly members = new Set<Client<S>>()
  private readonly bySession = new Map<S, Set<Client<S>>>()
  private readonly opts: AlarmHubOptions<S>
  private pending: AlarmEntry[] = []
  private pendingBytes = 0
  private flushTimer: NodeJS.Timeout | undefined
  private readonly pinger: NodeJS.Timeout
  private closed = false

  constructor (opts: AlarmHubOptions<S>) {
    this.opts = opts
    this.pinger = setInterval(() => this.ping(), opts.pingMs).unref()
  }

  /** The seq space `hello` names now. */
  get instance (): string {
    return this.opts.replay?.instance ?? this.opts.instance
  }

  /** Open alarm WebSockets. */
  get clients (): number {
    return this.members.size
  }

  /**
   * Greets a new client (`hello`, then `gap` and the replay for `since`) and adds it to the fan-out.
   * False when its session ended meanwhile or the hub is closed: it got its notice and is closing.
   */
  add ({ socket, wire, session, since }: JoinRequest<S>): boolean {
    if (this.closed) {
      socket.close(1001, 'gateway shutting down')
      return false
    }
    const replay = this.opts.replay
    if (replay !== null && replay.ready === false) {
      // No hello: its instance and lastSeq are not known yet. 1013 is "try again later"; the client
      // library reconnects with backoff.
      socket.close(1013, 'alarm stream not available yet')
      return false
    }
    // A since ahead of a shared stream's reader: those alarms came through another instance.
    const lastSeq = Math.max(replay?.lastSeq ?? 0, replay?.shared === true && since !== undefined ? since : 0)
    // Whatever the feed holds now is either replayed below (since) or before this client's time.
    const client: Client<S> = { socket, wire, session, alive: true, after: lastSeq, slack: 0 }
    socket.on('pong', () => { client.alive = true })
    socket.on('close', () => this.remove(client))
    wire.cork()
    socket.send(JSON.stringify({ type: 'hello', instance: this.instance, lastSeq }), TEXT)
    if (since !== undefined && replay !== null) {
      // Replay and joining the live set happen in the same tick: no alarm can fall in between.
      const { gap, entries } = replay.since(since)
      if (gap !== undefined) socket.send(JSON.stringify({ type: 'gap', from: gap.from, to: gap.to }), TEXT)
      for (const entry of entries) {
        socket.send(entry.frame, TEXT)
        client.slack += entry.frame.length
      }
    }
    if (session.ended !== undefined) {
      // The session ended between the upgrade's session check and now.
      socket.send(JSON.stringify({ type: 'session', state: noticeFor(session.ended) }), TEXT)
      wire.uncork()
      socket.close(1000, 'session ended')
      return false
    }
    wire.uncork()
    this.members.add(client)
    let set = this.bySession.get(session)
    if (set === undefined) {
      set = new Set()
      this.bySession.set(session, set)
    }
    set.add(client)
    this.opts.sessions.hold(session)
    return true
  }

  /** Queues a numbered alarm for every client; it goes out within FLUSH_MS. */
  publish (entry: AlarmEntry): void {
    if (this.closed) return
    this.pending.push(entry)
    this.pendingBytes += entry.frame.length
    if (this.pending.length >= FLUSH_AT || this.pendingBytes >= FLUSH_BYTES) this.flush()
    else this.flushTimer ??= setTimeout(() => this.flush(), FLUSH_MS)
  }

  /** Tells the session's clients, after the alarms published before now, and closes them. */
  endSession (session: S, reason: EndReason): void {
    const set = this.bySession.get(session)
    if (set === undefined) return
    this.flush()
    const state = noticeFor(reason)
    const frame = JSON.stringify({ type: 'session', state })
    for (const client of [...set]) {
      client.socket.send(frame, TEXT)
      this.remove(client)
      client.socket.close(reason === 'shutdown' ? 1001 : 1000, `session ${state}`)
    }
  }

  /**
   * The seq space started again (the bus's stream was lost: a new `instance`): what is queued
   * belongs to the old one and is dropped, and every client is closed with 1012 (service restart)
   * so that it reconnects and sees the new `instance` in its `hello`: a restart it can see.
   */
  restart (): void {
    if (this.closed) return
    if (this.flushTimer !== undefined) clearTimeout(this.flushTimer)
    this.flushTimer = undefined
    this.pending = []
    this.pendingBytes = 0
    for (const client of [...this.members]) {
      this.remove(client)
      client.socket.close(1012, 'alarm stream restarted')
    }
  }

  /** Shutdown: what is queued goes out, then every client gets 1001 (going away). */
  close (): void {
    if (this.closed) return
    this.flush()
    this.closed = true
    clearInterval(this.pinger)
    // Removed as their sockets close, like any other client.
    for (const client of this.members) client.socket.close(1001, 'gateway shutting down')
  }

  private flush (): void {
    if (this.flushTimer !== undefined) clearTimeout(this.flushTimer)
    this.flushTimer = undefined
    const batch = this.pending
    this.pending = []
    this.pendingBytes = 0
    const last = batch.at(-1)
    if (last === undefined) return
    const limit = this.opts.maxBufferedBytes
    let sent = 0
    for (const client of this.members) {
      if (client.after >= last.seq) continue
      // Judged before the batch: while corked, even a fast reader's bufferedAmount holds the batch.
      const buffered = client.socket.bufferedAmount
      if (buffered > limit + client.slack) {
        this.cutOff(client)
        continue
      }
      if (buffered <= limit) client.slack = 0
      // ws corks each frame's header and payload; corking the batch makes it one write.
      client.wire.cork()
      for (const entry of batch) {
        if (entry.seq <= client.after) continue
        client.socket.send(entry.frame, TEXT)
        client.after = entry.seq
        sent++
      }
      client.wire.uncork()
    }
    this.stats.forwarded += sent
  }

  private cutOff (client: Client<S>): void {
    this.stats.cutOff++
    this.remove(client)
    client.socket.close(1013, 'too slow: send buffer limit reached')
    setTimeout(() => client.socket.terminate(), TERMINATE_AFTER_MS).unref()
  }

  private ping (): void {
    for (const client of this.members) {
      if (!client.alive) {
        this.remove(client)
        client.socket.terminate()
        continue
      }
      client.alive = false
      client.socket.ping()
    }
  }

  private remove (client: Client<S>): void {
    if (!this.members.delete(client)) return
    const set = this.bySession.get(client.session)
    set?.delete(client)
    if (set !== undefined && set.size === 0) this.bySession.delete(client.session)
    this.opts.sessions.release(client.session)
  }
}
