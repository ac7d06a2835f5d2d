import { test } from 'tap'
import { IncomingMessage } from 'node:http'
import { Duplex } from 'node:stream'
import { Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { WebSocketServer, type WebSocket } from 'ws'
import { AlarmHub, FLUSH_AT, FLUSH_BYTES, FLUSH_MS, type AlarmReplay, type AlarmSocket, type SessionHolder, type Wire } from '../../lib/alarm-hub.js'
import type { AlarmEntry, Replay } from '../../lib/alarm-feed.js'
import type { EndReason } from '../../lib/sessions.js'

const MAX_BUFFERED = 64 * 1024

/** A stream's cork: writes while corked leave as one write at the last uncork. */
class FakeWire implements Wire {
  writes = 0
  private depth = 0
  private dirty = false

  cork (): void { this.depth++ }

  uncork (): void {
    this.depth--
    if (this.depth === 0 && this.dirty) {
      this.dirty = false
      this.writes++
    }
  }

  write (): void {
    if (this.depth > 0) this.dirty = true
    else this.writes++
  }
}

interface Frame { type: string, seq?: number, state?: string, instance?: string, lastSeq?: number, from?: number, to?: number }

class FakeSocket implements AlarmSocket {
  bufferedAmount = 0
  readonly frames: Frame[] = []
  closed: { code: number, reason: string } | undefined
  terminated = false
  pings = 0
  /** Answers pings, as a live peer does. */
  answersPings = true
  readonly wire = new FakeWire()
  private readonly listeners = new Map<string, Array<() => void>>()

  send (data: Buffer | string): void {
    this.frames.push(JSON.parse(data.toString()) as Frame)
    this.wire.write()
  }

  close (code: number, reason: string): void { this.closed ??= { code, reason } }
  terminate (): void { this.terminated = true }

  ping (): void {
    this.pings++
    if (this.answersPings) this.emit('pong')
  }

  on (event: 'pong' | 'close', listener: () => void): this {
    this.listeners.set(event, [...this.listeners.get(event) ?? [], listener])
    return this
  }

  emit (event: 'pong' | 'close'): void {
    for (const listener of this.listeners.get(event) ?? []) listener()
  }

  seqs (): number[] {
    return this.frames.filter(f => f.type === 'alarm').map(f => f.seq ?? -1)
  }
}

interface FakeSession { ended: EndReason | undefined, name: string }

class FakeStore implements SessionHolder<FakeSession> {
  readonly held = new Map<FakeSession, number>()
  hold (session: FakeSession): void { this.held.set(session, (this.held.get(session) ?? 0) + 1) }
  release (session: FakeSession): void { this.held.set(session, (this.held.get(session) ?? 0) - 1) }
}

/** The feed's numbering and buffer, without UDP: `emit` numbers alarms and publishes them. */
class FakeFeed implements AlarmReplay {
  lastSeq = 0
  /** Where numbered alarms go (the hub's publish, as plugins/alarms.ts wires it). */
  publish: (entry: AlarmEntry) => void = () => {}
  private readonly buffer: AlarmEntry[] = []
  constructor (private readonly capacity = 1000) {}

  emit (n: number, bytes = 40): void {
    for (let i = 0; i < n; i++) {
      const seq = ++this.lastSeq
      const head = `{"type":"alarm","seq":${seq},"alarm":"`
      const entry = { seq, frame: Buffer.from(head + 'x'.repeat(Math.max(bytes - head.length - 2, 0)) + '"}') }
      this.buffer.push(entry)
      if (this.buffer.length > this.capacity) this.buffer.shift()
      this.publish(entry)
    }
  }

  since (seq: number): Replay {
    if (seq >= this.lastSeq) return { gap: undefined, entries: [] }
    const first = this.buffer[0]?.seq ?? this.lastSeq + 1
    return { gap: seq + 1 < first ? { from: seq + 1, to: first - 1 } : undefined, entries: this.buffer.filter(e => e.seq > seq) }
  }
}

function setup (opts: { capacity?: number, pingMs?: number, noFeed?: boolean } = {}) {
  const store = new FakeStore()
  const feed = new FakeFeed(opts.capacity)
  const hub = new AlarmHub<FakeSession>({
    instance: 'gw-test',
    replay: opts.noFeed === true ? null : feed,
    sessions: store,
    maxBufferedBytes: MAX_BUFFERED,
    pingMs: opts.pingMs ?? 60_000
  })
  feed.publish = (entry) => { hub.publish(entry) }
  const join = (name: string, since?: number, session: FakeSession = { ended: undefined, name }): { socket: FakeSocket, session: FakeSession, joined: boolean } => {
    const socket = new FakeSocket()
    const joined = hub.add({ socket, wire: socket.wire, session, since })
    return { socket, session, joined }
  }
  return { hub, feed, store, join }
}

async function until (what: string, predicate: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

test('hello first, then only the alarms published after joining', async (t) => {
  const { hub, feed, store, join } = setup()
  t.teardown(() => hub.close())
  feed.emit(3)
  const { socket, session, joined } = join('alice')
  t.ok(joined)
  t.same(socket.frames, [{ type: 'hello', instance: 'gw-test', lastSeq: 3 }])
  t.equal(hub.clients, 1)
  t.equal(store.held.get(session), 1, 'the session is held while its WebSocket is open')
  feed.emit(2)
  await until('the batch', () => socket.seqs().length === 2)
  t.same(socket.seqs(), [4, 5])
  t.equal(hub.stats.forwarded, 2)
})

test('without a feed: hello says lastSeq 0 and since replays nothing', async (t) => {
  const { hub, join } = setup({ noFeed: true })
  t.teardown(() => hub.close())
  const { socket } = join('alice', 0)
  t.same(socket.frames, [{ type: 'hello', instance: 'gw-test', lastSeq: 0 }])
})

test('batching: alarms wait up to FLUSH_MS and leave as one write per client', async (t) => {
  const { hub, feed, join } = setup()
  t.teardown(() => hub.close())
  const a = join('alice').socket
  const b = join('bob').socket
  t.equal(a.wire.writes, 1, 'hello is one write')
  feed.emit(5)
  t.same(a.seqs(), [], 'nothing is written at once')
  const started = Date.now()
  await until('the batch', () => a.seqs().length === 5 && b.seqs().length === 5)
  t.ok(Date.now() - started >= FLUSH_MS - 2, 'written after the window')
  t.equal(a.wire.writes, 2, 'five alarms, one write')
  t.equal(b.wire.writes, 2)
  t.equal(hub.stats.forwarded, 10, 'one per alarm and client')
})

test('batching: FLUSH_AT alarms or FLUSH_BYTES go out at once', async (t) => {
  const { hub, feed, join } = setup()
  t.teardown(() => hub.close())
  const { socket } = join('alice')
  feed.emit(FLUSH_AT - 1)
  t.equal(socket.seqs().length, 0)
  feed.emit(1)
  t.equal(socket.seqs().length, FLUSH_AT, 'the 64th alarm flushes the batch')
  t.equal(socket.wire.writes, 2)
  feed.emit(1, FLUSH_BYTES / 2)
  t.equal(socket.seqs().length, FLUSH_AT)
  feed.emit(1, FLUSH_BYTES / 2)
  t.equal(socket.seqs().length, FLUSH_AT + 2, '64 KiB flushes the batch')
  t.equal(socket.wire.writes, 3)
})

/** A byte stream that counts the writes reaching it (as a TCP socket would make syscalls). */
class CountingStream extends Duplex {
  writes = 0
  override _read (): void {}
  override _write (_chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.writes++
    callback()
  }

  override _writev (_chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.writes++
    callback()
  }
}

/** A real `ws` WebSocket (server side) on a CountingStream, upgraded through ws's public API. */
async function wsOn (stream: CountingStream): Promise<WebSocket> {
  const wss = new WebSocketServer({ noServer: true })
  const req = new IncomingMessage(new Socket())
  req.method = 'GET'
  req.headers = { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64') }
  return await new Promise((resolve) => wss.handleUpgrade(req, stream, Buffer.alloc(0), resolve))
}

test('cork through the socket ws writes to: one write per client per batch with a real ws', async (t) => {
  const { hub, feed } = setup()
  t.teardown(() => hub.close())
  const plain = new CountingStream()
  const ws = await wsOn(plain)
  t.teardown(() => ws.terminate())
  const before = plain.writes
  for (let i = 0; i < 5; i++) ws.send(Buffer.from(`{"n":${i}}`), { binary: false })
  t.equal(plain.writes - before, 5, 'uncorked, ws makes one write per frame')

  const stream = new CountingStream()
  const socket = await wsOn(stream)
  // ws would wait 30 s for the closing handshake that close() starts.
  t.teardown(() => socket.terminate())
  t.ok(hub.add({ socket, wire: stream, session: { ended: undefined, name: 'alice' } }))
  const joined = stream.writes
  feed.emit(5)
  await until('the batch', () => hub.stats.forwarded === 5)
  t.equal(stream.writes - joined, 1, 'five alarms, one write')
  feed.emit(FLUSH_AT)
  t.equal(stream.writes - joined, 2, 'a full batch, one write')
})

test('a client that stops reading is cut off (1013, then terminated); the others go on', async (t) => {
  const { hub, feed, store, join } = setup()
  t.teardown(() => hub.close())
  const slow = join('slow')
  const good = join('good')
  feed.emit(FLUSH_AT)
  slow.socket.bufferedAmount = MAX_BUFFERED + 1
  feed.emit(FLUSH_AT)
  t.same(slow.socket.closed, { code: 1013, reason: 'too slow: send buffer limit reached' })
  t.equal(slow.socket.seqs().length, FLUSH_AT, 'nothing more once over the bound')
  t.equal(good.socket.seqs().length, 2 * FLUSH_AT, 'the other client got every alarm')
  t.equal(hub.stats.cutOff, 1)
  t.equal(hub.clients, 1)
  t.equal(store.held.get(slow.session), 0, 'its session is released')
  feed.emit(FLUSH_AT)
  t.equal(good.socket.seqs().length, 3 * FLUSH_AT)
  t.equal(hub.stats.cutOff, 1, 'cut off once')
  t.notOk(slow.socket.terminated, 'its close frame gets a moment')
  await until('terminate', () => slow.socket.terminated, 3000)
})

test('a ?since= replay may exceed the bound until the client has caught up', async (t) => {
  const { hub, feed, join } = setup()
  t.teardown(() => hub.close())
  // Two full batches, flushed to nobody before the client joins.
  feed.emit(2 * FLUSH_AT, 1024)
  const { socket } = join('alice', 0)
  t.same(socket.seqs(), Array.from({ length: 2 * FLUSH_AT }, (_, i) => i + 1), 'the replay')
  t.equal(socket.wire.writes, 1, 'hello and the replay are one write')
  // The replay is still queued: above the bound, within its slack.
  socket.bufferedAmount = MAX_BUFFERED + 30 * 1024
  feed.emit(FLUSH_AT)
  t.equal(socket.closed, undefined, 'not cut off')
  t.equal(socket.seqs().length, 3 * FLUSH_AT)
  // Caught up: the slack is gone, the bound applies again.
  socket.bufferedAmount = MAX_BUFFERED
  feed.emit(FLUSH_AT)
  socket.bufferedAmount = MAX_BUFFERED + 1
  feed.emit(FLUSH_AT)
  t.equal(socket.closed?.code, 1013)
  t.equal(hub.stats.cutOff, 1)
})

test('a session notice comes after the alarms published before the end', async (t) => {
  const { hub, feed, store, join } = setup()
  t.teardown(() => hub.close())
  const alice = join('alice')
  const alice2 = join('alice', undefined, alice.session)
  const bob = join('bob')
  feed.emit(3)
  t.same(alice.socket.seqs(), [], 'still in the batch window')
  hub.endSession(alice.session, 'logout')
  for (const client of [alice, alice2]) {
    t.same(client.socket.frames.slice(1).map(f => f.type === 'alarm' ? f.seq : f.state), [1, 2, 3, 'logout'])
    t.same(client.socket.closed, { code: 1000, reason: 'session logout' })
  }
  t.equal(store.held.get(alice.session), 0, 'both WebSockets released')
  t.equal(hub.clients, 1)
  t.same(bob.socket.seqs(), [1, 2, 3], 'the batch went to everyone')
  t.equal(bob.socket.closed, undefined)
  hub.endSession(bob.session, 'shutdown')
  t.same(bob.socket.frames.at(-1), { type: 'session', state: 'lost' })
  t.same(bob.socket.closed, { code: 1001, reason: 'session lost' })
  hub.endSession(bob.session, 'shutdown')
  t.equal(bob.socket.frames.filter(f => f.type === 'session').length, 1, 'a session ends once')
})

test('a session that ended before joining gets its notice and is closed', async (t) => {
  const { hub, feed, store, join } = setup()
  t.teardown(() => hub.close())
  feed.emit(10)
  const { socket, session, joined } = join('alice', 8, { ended: 'expired', name: 'alice' })
  t.notOk(joined)
  t.same(socket.frames.map(f => f.type === 'alarm' ? f.seq : f.type), ['hello', 9, 10, 'session'])
  t.same(socket.frames.at(-1), { type: 'session', state: 'expired' })
  t.same(socket.closed, { code: 1000, reason: 'session ended' })
  t.equal(hub.clients, 0)
  t.equal(store.held.get(session), undefined, 'never held')
})

test('since: a gap frame names what left the buffer, then the replay, then live alarms', async (t) => {
  const { hub, feed, join } = setup({ capacity: 10 })
  t.teardown(() => hub.close())
  feed.emit(30)
  const { socket } = join('alice', 5)
  t.same(socket.frames.slice(0, 2), [{ type: 'hello', instance: 'gw-test', lastSeq: 30 }, { type: 'gap', from: 6, to: 20 }])
  t.same(socket.seqs(), [21, 22, 23, 24, 25, 26, 27, 28, 29, 30])
  feed.emit(2)
  await until('live alarms', () => socket.seqs().length === 12)
  t.same(socket.seqs().slice(-2), [31, 32], 'no duplicate, no gap')
  const current = join('bob', 32).socket
  t.same(current.frames, [{ type: 'hello', instance: 'gw-test', lastSeq: 32 }], 'up to date: nothing to replay')
})

test('ping: a client that misses a pong is terminated, one that answers stays', async (t) => {
  const { hub, store, join } = setup({ pingMs: 20 })
  t.teardown(() => hub.close())
  const live = join('live')
  const dead = join('dead')
  dead.socket.answersPings = false
  await until('the dead peer terminated', () => dead.socket.terminated)
  t.equal(hub.clients, 1)
  t.equal(store.held.get(dead.session), 0)
  t.ok(live.socket.pings >= 2)
  t.notOk(live.socket.terminated)
})

test('a socket that closes leaves the hub and releases its session', async (t) => {
  const { hub, store, join } = setup()
  t.teardown(() => hub.close())
  const { socket, session } = join('alice')
  socket.emit('close')
  t.equal(hub.clients, 0)
  t.equal(store.held.get(session), 0)
  socket.emit('close')
  t.equal(store.held.get(session), 0, 'released once')
})

test('close: what is queued goes out, then 1001; later clients and alarms are refused', async (t) => {
  const { hub, feed, join } = setup()
  const { socket } = join('alice')
  feed.emit(2)
  hub.close()
  t.same(socket.seqs(), [1, 2])
  t.same(socket.closed, { code: 1001, reason: 'gateway shutting down' })
  const late = join('bob')
  t.notOk(late.joined)
  t.same(late.socket.closed, { code: 1001, reason: 'gateway shutting down' })
  feed.emit(1)
  await sleep(FLUSH_MS * 3)
  t.same(socket.seqs(), [1, 2])
})
