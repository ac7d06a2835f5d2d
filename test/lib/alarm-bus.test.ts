import { test, type Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { createClient } from 'redis'
import { AlarmBus, type AlarmBusOptions } from '../../lib/alarm-bus.js'
import type { AlarmEntry } from '../../lib/alarm-feed.js'
import { eventually } from '../helper.js'
import { freePort } from '../free-port.js'
import { startRedis, type RedisServer } from '../redis-server.js'

// Every test runs against a real redis-server (test/redis-server.ts): without one on PATH they fail.

interface Frame { type: string, seq?: number, from?: number, to?: number, alarm?: unknown, receivedAt?: string }

interface Bus {
  bus: AlarmBus
  /** What it published, as frames. */
  frames: Frame[]
  restarts: number
}

function newBus (t: Test, url: string, opts: Partial<AlarmBusOptions> = {}): Bus {
  const bus = new AlarmBus({ url, stream: 'test:alarms', bufferSize: 100, dedupMs: 2000, ingest: true, blockMs: 300, ...opts })
  const out: Bus = { bus, frames: [], restarts: 0 }
  bus.on('alarm', (entry: AlarmEntry) => out.frames.push(JSON.parse(entry.frame.toString()) as Frame))
  bus.on('restart', () => { out.restarts++ })
  bus.start()
  t.teardown(() => bus.close())
  return out
}

function datagram (id: number | string): { bytes: Buffer, alarm: unknown, receivedAt: Date } {
  const xml = `<alarm><id>${id}</id><level>major</level><message>压力过高</message></alarm>`
  return { bytes: Buffer.from(xml), alarm: { alarm: { id: String(id), level: 'major', message: '压力过高' } }, receivedAt: new Date() }
}

const alarmSeqs = (frames: Frame[]): number[] => frames.filter(f => f.type === 'alarm').map(f => f.seq as number)
const ids = (frames: Frame[]): string[] => frames.filter(f => f.type === 'alarm').map(f => (f.alarm as { alarm: { id: string } }).alarm.id)

async function redisClient (t: Test, redis: RedisServer): Promise<ReturnType<typeof createClient>> {
  const c = createClient({ url: redis.url, socket: { reconnectStrategy: false } })
  c.on('error', () => {})
  await c.connect()
  t.teardown(() => { if (c.isOpen) c.destroy() })
  return c
}

test('two ingesting instances store each alarm once; every reader sees the same seq, instance and frame', async (t) => {
  const redis = await startRedis(t)
  const a = newBus(t, redis.url)
  const b = newBus(t, redis.url)
  const reader = newBus(t, redis.url, { ingest: false })
  t.ok(await eventually(() => a.bus.ready && b.bus.ready && reader.bus.ready, 5000), 'all three read the stream')
  t.ok(a.bus.instance?.startsWith('test:alarms@'), 'the instance names the stream')
  t.equal(b.bus.instance, a.bus.instance, 'the same instance on every member')
  t.equal(reader.bus.instance, a.bus.instance)

  // Both ingesters receive every datagram, as when the alarm server sends to each subscriber.
  for (let i = 1; i <= 20; i++) {
    a.bus.append(datagram(i))
    b.bus.append(datagram(i))
  }
  t.ok(await eventually(() => reader.frames.length === 20 && a.frames.length === 20 && b.frames.length === 20, 5000), 'each member read 20 alarms')
  await sleep(300)
  for (const member of [a, b, reader]) {
    t.same(alarmSeqs(member.frames), Array.from({ length: 20 }, (_, i) => i + 1), 'seq 1…20, each once')
    t.same(ids(member.frames), Array.from({ length: 20 }, (_, i) => String(i + 1)), 'in the order received')
  }
  t.same(a.frames, reader.frames, 'the same frames (receivedAt included) on every member')
  t.equal(a.bus.stats.appended + b.bus.stats.appended, 20, 'appended once over both')
  t.equal(a.bus.stats.deduplicated + b.bus.stats.deduplicated, 20, 'the other copy was a duplicate')
  t.equal(reader.bus.stats.appended, 0, 'a reader never appends')
  t.same(a.bus.health(), { ok: true })
  t.equal(a.bus.connected, true)

  // A datagram with other bytes is another alarm, even right after.
  a.bus.append(datagram('21'))
  t.ok(await eventually(() => reader.frames.length === 21, 3000))
  t.equal(reader.frames[20]?.seq, 21)
})

test('dedup holds within ALARM_DEDUP_MS only; 0 turns it off (its documented limit: same bytes, one alarm)', async (t) => {
  const redis = await startRedis(t)
  const a = newBus(t, redis.url, { dedupMs: 150 })
  t.ok(await eventually(() => a.bus.ready, 5000))
  a.bus.append(datagram(1))
  a.bus.append(datagram(1))
  t.ok(await eventually(() => a.bus.stats.deduplicated === 1 && a.frames.length === 1, 3000), 'within the window: one alarm')
  await sleep(300)
  a.bus.append(datagram(1))
  t.ok(await eventually(() => a.frames.length === 2, 3000), 'after the window: the same bytes are a new alarm')
  t.same(alarmSeqs(a.frames), [1, 2])

  const off = newBus(t, redis.url, { dedupMs: 0, stream: 'test:nodedup' })
  t.ok(await eventually(() => off.bus.ready, 5000))
  off.bus.append(datagram(1))
  off.bus.append(datagram(1))
  t.ok(await eventually(() => off.frames.length === 2, 3000), 'ALARM_DEDUP_MS=0: no dedup')
  t.equal(off.bus.stats.deduplicated, 0)
})

test('the stream is trimmed to ALARM_BUFFER; since() names what is gone as a gap; a late reader loads the stream', async (t) => {
  const redis = await startRedis(t)
  const a = newBus(t, redis.url, { bufferSize: 3 })
  t.ok(await eventually(() => a.bus.ready, 5000))
  for (let i = 1; i <= 5; i++) {
    a.bus.append(datagram(i))
    t.ok(await eventually(() => a.frames.length === i, 3000))
  }
  const c = await redisClient(t, redis)
  t.equal(await c.xLen('test:alarms'), 3, 'XLEN = ALARM_BUFFER')

  const late = newBus(t, redis.url, { bufferSize: 3, ingest: false })
  t.ok(await eventually(() => late.bus.ready, 5000))
  t.equal(late.frames.length, 0, 'what was there before is not published again')
  t.equal(late.bus.lastSeq, 5)
  for (const bus of [a.bus, late.bus]) {
    const r = bus.since(0)
    t.same(r.gap, { from: 1, to: 2 }, 'the trimmed alarms are a gap')
    t.same(r.entries.map(e => e.seq), [3, 4, 5])
    t.same(bus.since(3).entries.map(e => e.seq), [4, 5])
    t.same(bus.since(3).gap, undefined)
    t.same(bus.since(5), { gap: undefined, entries: [] })
  }
  t.same(JSON.parse(late.bus.since(4).entries[0]?.frame.toString() ?? '{}'), JSON.parse(a.bus.since(4).entries[0]?.frame.toString() ?? '{}'), 'the same frame on both')
})

test('a reader that was cut off while the stream was trimmed past it gets a live gap frame', async (t) => {
  const redis = await startRedis(t)
  const a = newBus(t, redis.url, { bufferSize: 3, queueMax: 100 })
  const reader = newBus(t, redis.url, { bufferSize: 3, ingest: false, blockMs: 5000, clientName: 'victim' })
  t.ok(await eventually(() => a.bus.ready && reader.bus.ready, 5000))
  a.bus.append(datagram(1))
  t.ok(await eventually(() => reader.frames.length === 1, 3000))
  const c = await redisClient(t, redis)
  // Wait for the reader's XREAD to be blocked, then cut only that connection and append 5 more.
  await sleep(200)
  const list = String(await c.sendCommand(['CLIENT', 'LIST']))
  const xreadId = /id=(\d+) [^\n]*name=victim:reader [^\n]*cmd=xread/.exec(list)?.[1]
  t.ok(xreadId, 'the reader blocks in XREAD on its own connection')
  t.equal(await c.sendCommand(['CLIENT', 'KILL', 'ID', xreadId ?? '0']), 1, 'cut')
  for (let i = 2; i <= 6; i++) a.bus.append(datagram(i))
  t.ok(await eventually(() => reader.bus.lastSeq === 6, 5000), 'the reader resumed')
  t.same(reader.frames.map(f => [f.type, f.seq ?? f.from, f.to ?? f.seq]), [
    ['alarm', 1, 1], ['gap', 2, 3], ['alarm', 4, 4], ['alarm', 5, 5], ['alarm', 6, 6]
  ], 'seqs 2 and 3 were trimmed while it was away: a gap, then the rest')
})

test('Redis down at start: not ready, datagrams wait (bounded); beyond the bound they become a gap', async (t) => {
  const port = await freePort()
  const url = `redis://127.0.0.1:${port}`
  const a = newBus(t, url, { queueMax: 3 })
  await sleep(300)
  t.equal(a.bus.ready, false, 'no stream read: not ready')
  t.equal(a.bus.health().ok, false)
  t.match(a.bus.health(), { reason: /alarm bus unreachable/ })
  t.equal(a.bus.connected, false)
  for (let i = 1; i <= 5; i++) a.bus.append(datagram(i))
  t.equal(a.bus.pending, 3, 'three wait')
  t.equal(a.bus.stats.lost, 2, 'two could not be kept')

  // Redis comes up on that port: the queue is appended in order, then the gap in the lost ones' place.
  await startRedis(t, { port })
  t.ok(await eventually(() => a.bus.ready && a.bus.lastSeq === 5, 10_000), 'caught up once Redis is there')
  const stored = a.bus.since(0).entries.map(e => JSON.parse(e.frame.toString()) as Frame)
  t.same(stored.map(f => [f.type, f.seq ?? f.from, f.to ?? f.seq]), [['alarm', 1, 1], ['alarm', 2, 2], ['alarm', 3, 3], ['gap', 4, 5]], 'in order, the lost ones as a gap')
  t.same(ids(stored), ['1', '2', '3'])
  t.equal(a.bus.pending, 0)
  t.ok(await eventually(() => a.bus.health().ok, 3000), 'healthy')
})

test('Redis lost and restarted empty: a new stream identity, readers restart; nothing crashes; errors counted', async (t) => {
  const redis = await startRedis(t)
  const a = newBus(t, redis.url)
  const reader = newBus(t, redis.url, { ingest: false })
  t.ok(await eventually(() => a.bus.ready && reader.bus.ready, 5000))
  const before = reader.bus.instance
  a.bus.append(datagram(1))
  a.bus.append(datagram(2))
  t.ok(await eventually(() => reader.frames.length === 2, 3000))

  await redis.stop()
  t.ok(await eventually(() => !reader.bus.health().ok && !a.bus.health().ok, 5000), 'unhealthy while Redis is gone')
  t.equal(reader.bus.ready, true, 'still answers hello and since from its mirror')
  t.same(reader.bus.since(0).entries.map(e => e.seq), [1, 2])
  a.bus.append(datagram(3))
  t.equal(a.bus.pending, 1, 'the datagram waits for Redis')

  await redis.start()
  t.ok(await eventually(() => reader.restarts === 1 && a.restarts === 1, 10_000), 'both saw the new identity')
  t.not(reader.bus.instance, before, 'a new instance: clients can see the restart')
  t.equal(reader.bus.instance, a.bus.instance)
  t.ok(await eventually(() => reader.bus.lastSeq === 1 && a.bus.pending === 0, 5000), 'the waiting datagram is seq 1 of the new stream')
  t.same(ids(reader.bus.since(0).entries.map(e => JSON.parse(e.frame.toString()) as Frame)), ['3'])
  t.ok(a.bus.stats.errors > 0 && reader.bus.stats.errors > 0, 'errors counted')
  t.ok(await eventually(() => a.bus.health().ok && reader.bus.health().ok, 5000), 'healthy again')
})

test('a FLUSHALL under running readers is a new identity too', async (t) => {
  const redis = await startRedis(t)
  const a = newBus(t, redis.url)
  t.ok(await eventually(() => a.bus.ready, 5000))
  for (let i = 1; i <= 3; i++) a.bus.append(datagram(i))
  t.ok(await eventually(() => a.bus.lastSeq === 3, 3000))
  const before = a.bus.instance
  const c = await redisClient(t, redis)
  await c.flushAll()
  t.ok(await eventually(() => a.restarts === 1, 3000), 'an idle reader notices within its block time')
  t.not(a.bus.instance, before)
  a.bus.append(datagram(4))
  t.ok(await eventually(() => a.bus.lastSeq === 1, 3000), 'numbering starts again in the new seq space')
})

test('a key of the wrong type is refused by Redis, counted, and retried without a crash', async (t) => {
  const redis = await startRedis(t)
  const c = await redisClient(t, redis)
  await c.set('test:alarms:meta', 'not a hash')
  const a = newBus(t, redis.url)
  await sleep(500)
  t.equal(a.bus.ready, false, 'WRONGTYPE: the stream\'s identity cannot be read')
  t.ok(a.bus.stats.errors > 0)
  t.equal(a.bus.health().ok, false)
  await c.del('test:alarms:meta')
  t.ok(await eventually(() => a.bus.ready, 10_000), 'recovers once the key is fixed')
})
