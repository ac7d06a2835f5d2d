import { test, type Test } from 'tap'
import dgram from 'node:dgram'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import WebSocket from 'ws'
import { build, cookieHeader, JSON_HEADERS, startSimulator } from '../../helper.js'

interface Frame { type: string, seq?: number, alarm?: any, from?: number, to?: number, state?: string, instance?: string, lastSeq?: number }

/** A real WebSocket client that records every frame. */
class Recorder {
  readonly frames: Frame[] = []
  readonly ws: WebSocket
  closeCode: number | undefined
  readonly opened: Promise<void>
  readonly closed: Promise<number>

  constructor (url: string, cookie: string, origin?: string) {
    this.ws = new WebSocket(url, { headers: { cookie, ...(origin ? { origin } : {}) } })
    this.ws.on('message', (data) => { this.frames.push(JSON.parse(data.toString()) as Frame) })
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve())
      this.ws.once('error', reject)
    })
    this.closed = new Promise((resolve) => this.ws.once('close', (code) => { this.closeCode = code; resolve(code) }))
  }

  alarms (): Frame[] {
    return this.frames.filter(f => f.type === 'alarm')
  }

  async until (predicate: (r: Recorder) => boolean, ms = 10_000): Promise<void> {
    const end = Date.now() + ms
    while (!predicate(this)) {
      if (Date.now() > end) throw new Error(`timed out; ${this.frames.length} frames`)
      await sleep(10)
    }
  }
}

async function setup (t: Test, env: Record<string, string> = {}) {
  const sim = await startSimulator(t)
  const built = await build(t, { sim, listen: true, env: { ALARM_URL: sim.alarmUrl, ...env } })
  const wsUrl = built.url.replace('http', 'ws') + '/ws/alarms'
  // Wait for the gateway's subscribe to reach the simulator.
  const end = Date.now() + 5000
  while (sim.subscribers.length === 0 && Date.now() < end) await sleep(10)
  const loginAs = async (user: string): Promise<string> => {
    const res = await fetch(`${built.url}/api/login`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ username: user, password: user }) })
    return cookieHeader(res)
  }
  return { ...built, wsUrl, loginAs }
}

test('hello first, then 1,000 alarms complete and in order', async (t) => {
  const { sim, wsUrl, loginAs, url } = await setup(t)
  const cookie = await loginAs('alice')
  const rec = new Recorder(wsUrl, cookie, url)
  await rec.opened
  await rec.until(r => r.frames.length >= 1)
  const hello = rec.frames[0]
  t.equal(hello?.type, 'hello')
  t.type(hello?.instance, 'string')
  t.equal(hello?.lastSeq, 0)
  await sim.sendAlarms(1000)
  await rec.until(r => r.alarms().length >= 1000)
  const alarms = rec.alarms()
  t.equal(alarms.length, 1000)
  t.same(alarms.map(a => a.seq), Array.from({ length: 1000 }, (_, i) => i + 1), 'seq 1, 2, 3 … without gaps')
  const ids = alarms.map(a => Number(a.alarm.alarm.id))
  t.ok(ids.every((id, i) => i === 0 || id === (ids[i - 1] as number) + 1), 'alarm ids in the order sent')
  const first = alarms[0] as Frame & { receivedAt: string }
  t.same(Object.keys(first).sort(), ['alarm', 'receivedAt', 'seq', 'type'])
  t.ok(!Number.isNaN(Date.parse(first.receivedAt)))
  t.same(Object.keys(first.alarm.alarm).sort(), ['id', 'level', 'message', 'source', 'time'], 'the datagram as JSON (generic mapping)')
  t.equal(typeof first.alarm.alarm.id, 'string', 'values stay strings')
})

test('a spoofed datagram from another address is dropped and counted', async (t) => {
  const { app, sim, wsUrl, loginAs, url } = await setup(t)
  const rec = new Recorder(wsUrl, await loginAs('alice'), url)
  await rec.opened
  const spoofer = dgram.createSocket('udp4')
  t.teardown(() => spoofer.close())
  await new Promise<void>((resolve) => spoofer.bind(0, '127.0.0.2', () => resolve()))
  const port = app.alarms?.localPort as number
  await new Promise<void>((resolve, reject) => spoofer.send('<alarm><id>666</id><level>critical</level></alarm>', port, '127.0.0.1', (err) => err ? reject(err) : resolve()))
  await sim.sendAlarms(1)
  await rec.until(r => r.alarms().length >= 1)
  await sleep(100)
  t.equal(rec.alarms().length, 1, 'only the real alarm arrived')
  t.not(rec.alarms()[0]?.alarm.alarm.id, '666')
  t.equal(app.alarms?.stats.dropped.spoofed, 1)
})

test('?since= at the seam while alarms keep arriving: no gap, no duplicate', async (t) => {
  const { sim, wsUrl, loginAs, url } = await setup(t)
  const cookie = await loginAs('alice')
  const first = new Recorder(wsUrl, cookie, url)
  await first.opened
  const sending = sim.sendAlarms(400, { intervalMs: 2 })
  await first.until(r => r.alarms().length >= 50)
  first.ws.close()
  await first.closed
  const last = first.alarms().at(-1)?.seq as number
  const second = new Recorder(`${wsUrl}?since=${last}`, cookie, url)
  await second.opened
  await sending
  await second.until(r => r.alarms().length > 0 && r.alarms().at(-1)?.seq === 400)
  const seqs = [...first.alarms(), ...second.alarms()].map(a => a.seq)
  t.same(seqs, Array.from({ length: 400 }, (_, i) => i + 1), 'every alarm exactly once, in order')
  t.equal(second.frames[0]?.type, 'hello')
  t.notOk(second.frames.some(f => f.type === 'gap'))
})

test('alarms that left the buffer are named by a gap frame', async (t) => {
  const { sim, wsUrl, loginAs, url } = await setup(t, { ALARM_BUFFER: '10' })
  const cookie = await loginAs('alice')
  const probe = new Recorder(wsUrl, cookie, url)
  await probe.opened
  await sim.sendAlarms(30)
  await probe.until(r => r.alarms().length >= 30)
  const rec = new Recorder(`${wsUrl}?since=5`, cookie, url)
  await rec.opened
  await rec.until(r => r.alarms().length >= 10)
  t.same(rec.frames.slice(0, 2), [{ type: 'hello', instance: probe.frames[0]?.instance, lastSeq: 30 }, { type: 'gap', from: 6, to: 20 }])
  t.same(rec.alarms().map(a => a.seq), [21, 22, 23, 24, 25, 26, 27, 28, 29, 30])
})

test('the upgrade is refused without a session (401) and from another origin (403)', async (t) => {
  const { wsUrl, loginAs, url } = await setup(t, { ALLOWED_ORIGINS: 'https://ops.example.com' })
  const status = (headers: Record<string, string>) => new Promise<number>((resolve) => {
    const ws = new WebSocket(wsUrl, { headers })
    ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate() })
    ws.on('open', () => { resolve(101); ws.close() })
    ws.on('error', () => {})
  })
  t.equal(await status({}), 401, 'no cookie')
  t.equal(await status({ cookie: 'lg_sid=' + 'B'.repeat(43) }), 401, 'forged cookie')
  const cookie = await loginAs('alice')
  t.equal(await status({ cookie, origin: 'https://evil.example.com' }), 403, 'another origin')
  t.equal(await status({ cookie, origin: url }), 403, 'same origin is not in ALLOWED_ORIGINS')
  t.equal(await status({ cookie, origin: 'https://ops.example.com' }), 101, 'an allowed origin')
  t.equal(await status({ cookie }), 101, 'no Origin: not a browser, the cookie decides')
})

test('same-origin only by default', async (t) => {
  const { wsUrl, loginAs, url } = await setup(t)
  const cookie = await loginAs('alice')
  const ok = new Recorder(wsUrl, cookie, url)
  await ok.opened
  const bad = new WebSocket(wsUrl, { headers: { cookie, origin: 'http://127.0.0.1:1' } })
  const code = await new Promise<number>((resolve) => {
    bad.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
    bad.on('error', () => {})
  })
  t.equal(code, 403)
})

test('session killed in the simulator → session lost frame, then close; logout → logout frame', async (t) => {
  const { sim, wsUrl, loginAs, url } = await setup(t)
  const alice = await loginAs('alice')
  const rec = new Recorder(wsUrl, alice, url)
  await rec.opened
  sim.killUser('alice')
  await rec.closed
  t.same(rec.frames.at(-1), { type: 'session', state: 'lost' })
  const bob = await loginAs('bob')
  const rec2 = new Recorder(wsUrl, bob, url)
  await rec2.opened
  await fetch(`${url}/api/logout`, { method: 'POST', headers: { cookie: bob } })
  await rec2.closed
  t.same(rec2.frames.at(-1), { type: 'session', state: 'logout' })
})

test('an open WebSocket keeps the session from expiring; idle expiry is announced', async (t) => {
  const { app, wsUrl, loginAs, url } = await setup(t, { SESSION_IDLE_MS: '200' })
  const cookie = await loginAs('alice')
  const rec = new Recorder(wsUrl, cookie, url)
  await rec.opened
  await sleep(700)
  t.equal(app.sessions.size, 1, 'still alive with its WebSocket open')
  rec.ws.close()
  await rec.closed
  await sleep(700)
  t.equal(app.sessions.size, 0, 'expired once the WebSocket closed')
})

// A real collection before each heap reading: what is retained, not what garbage the young
// generation happens to hold (128 MB of it on Node 24+, against 32 MB on Node 20).
setFlagsFromString('--expose-gc')
const collect = runInNewContext('gc') as () => void

test('a client that never reads is cut off; the others get every alarm; memory stays bounded', async (t) => {
  const { app, sim, wsUrl, loginAs, url } = await setup(t, { WS_MAX_BUFFERED_BYTES: '65536', ALARM_BUFFER: '100' })
  const slow = new Recorder(wsUrl, await loginAs('slow'), url)
  const good = new Recorder(wsUrl, await loginAs('good'), url)
  await Promise.all([slow.opened, good.opened])
  await slow.until(r => r.frames.length >= 1)
  // Stop reading: the kernel buffers fill, then the gateway's send buffer.
  const raw = (slow.ws as unknown as { _socket: net.Socket })._socket
  raw.pause()
  collect()
  const heapBefore = process.memoryUsage().heapUsed
  await sim.sendAlarms(20_000, { message: 'x'.repeat(200) })
  await good.until(r => r.alarms().length >= 20_000, 30_000)
  t.equal(good.alarms().length, 20_000)
  t.ok(good.alarms().every((a, i) => a.seq === i + 1), 'in order, no gap')
  t.ok(app.alarmHub.stats.cutOff >= 1, 'the slow client was cut off')
  t.equal(app.alarmHub.clients, 1)
  collect()
  const growth = process.memoryUsage().heapUsed - heapBefore
  t.ok(growth < 64 * 1024 * 1024, `heap growth bounded (${Math.round(growth / 1024)} KB)`)
  raw.resume()
  await slow.closed
  t.ok(slow.closeCode === 1013 || slow.closeCode === 1006, `closed (${slow.closeCode})`)
})

test('dead peers are found by ping/pong and closed', async (t) => {
  const { app, wsUrl, loginAs, url } = await setup(t, { WS_PING_MS: '50' })
  const rec = new Recorder(wsUrl, await loginAs('alice'), url)
  await rec.opened
  await rec.until(r => r.frames.length >= 1);
  (rec.ws as unknown as { _socket: net.Socket })._socket.pause()
  const end = Date.now() + 3000
  while (app.alarmHub.clients > 0 && Date.now() < end) await sleep(20)
  t.equal(app.alarmHub.clients, 0, 'the silent client was terminated')
  rec.ws.terminate()
})

test('malformed, JSON, oversized and undecodable datagrams', async (t) => {
  const { app, sim, wsUrl, loginAs, url } = await setup(t, { ALARM_MAX_BYTES: '1024' })
  const rec = new Recorder(wsUrl, await loginAs('alice'), url)
  await rec.opened
  sim.sendRawAlarm('not xml at all')
  sim.sendRawAlarm('<alarm><id>1</alarm>')
  sim.sendRawAlarm('{"id":"7","level":"minor"}')
  sim.sendRawAlarm('<alarm>' + 'x'.repeat(2000) + '</alarm>')
  // Invalid UTF-8 inside well-formed XML: as text it would carry U+FFFD instead of what was sent.
  const undecodable = Buffer.concat([Buffer.from('<alarm><id>9</id><message>'), Buffer.from([0xE5, 0x8E, 0xFF]), Buffer.from('</message></alarm>')])
  sim.sendRawAlarm(undecodable)
  sim.sendRawAlarm('<alarm><id>8</id></alarm>')
  await rec.until(r => r.alarms().length >= 5)
  await sleep(100)
  t.same(rec.alarms().map(a => a.alarm), [
    'not xml at all', '<alarm><id>1</alarm>', { id: '7', level: 'minor' },
    { $base64: undecodable.toString('base64') }, { alarm: { id: '8' } }
  ], 'the undecodable one is passed as its exact bytes')
  t.same(rec.alarms().map(a => a.seq), [1, 2, 3, 4, 5], 'no gap for the oversized one: it never got a number')
  t.equal(app.alarms?.stats.malformed, 3, 'the invalid bytes are counted with the malformed')
  t.equal(app.alarms?.stats.received, 5)
  t.equal(app.alarms?.stats.dropped.oversized, 1)
})

test('the alarm server absent at start and appearing later', async (t) => {
  const probe = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => probe.bind(0, '127.0.0.1', () => resolve()))
  const port = probe.address().port
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  const rpcSim = await startSimulator(t)
  const { app, url } = await build(t, { sim: rpcSim, listen: true, env: { ALARM_URL: `udp://127.0.0.1:${port}`, ALARM_RESUBSCRIBE_MS: '100' } })
  t.ok(app.alarms, 'the gateway started without its alarm server')
  const res = await fetch(`${url}/api/login`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ username: 'alice', password: 'alice' }) })
  const rec = new Recorder(url.replace('http', 'ws') + '/ws/alarms', cookieHeader(res), url)
  await rec.opened
  const alarmSim = await startSimulator(t, { alarmPort: port })
  const end = Date.now() + 5000
  while (alarmSim.subscribers.length === 0 && Date.now() < end) await sleep(20)
  t.equal(alarmSim.subscribers.length, 1, 're-subscribed once the server appeared')
  await alarmSim.sendAlarms(3)
  await rec.until(r => r.alarms().length >= 3)
  t.same(rec.alarms().map(a => a.seq), [1, 2, 3])
})

test('invalid ?since is 400', async (t) => {
  const { wsUrl, loginAs, url } = await setup(t)
  const cookie = await loginAs('alice')
  const code = await new Promise<number>((resolve) => {
    const ws = new WebSocket(`${wsUrl}?since=-1`, { headers: { cookie, origin: url } })
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
    ws.on('open', () => resolve(101))
    ws.on('error', () => {})
  })
  t.equal(code, 400)
})

test('shutdown: WebSockets close with 1001 and the gateway unsubscribes', async (t) => {
  const { app, sim, wsUrl, url } = await setup(t)
  t.equal(sim.subscribers.length, 1)
  // A WebSocket without a session cannot exist, so log in through the app itself.
  const res = await fetch(`${url}/api/login`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ username: 'alice', password: 'alice' }) })
  const rec = new Recorder(wsUrl, cookieHeader(res), url)
  await rec.opened
  await app.close()
  t.equal(await rec.closed, 1001)
  t.same(rec.frames.at(-1), { type: 'session', state: 'lost' }, 'told that its session is over')
  const end = Date.now() + 2000
  while (sim.subscribers.length > 0 && Date.now() < end) await sleep(10)
  t.equal(sim.subscribers.length, 0, 'the unsubscribe datagram reached the alarm server')
})

test('batched fan-out: alarms published before a session ends arrive before its notice', async (t) => {
  const { app, sim, wsUrl, loginAs, url } = await setup(t)
  const rec = new Recorder(wsUrl, await loginAs('alice'), url)
  await rec.opened
  await sim.sendAlarms(3)
  while ((app.alarms?.lastSeq ?? 0) < 3) await new Promise(resolve => setImmediate(resolve))
  const session = [...app.sessions.all()][0]
  if (session === undefined) throw new Error('no session')
  await app.sessions.logout(session, 'logout')
  await rec.closed
  t.same(rec.frames.slice(1).map(f => f.type === 'alarm' ? f.seq : f.state), [1, 2, 3, 'logout'])
})

test('batched fan-out: a client that reads is never cut off by the size of one batch', async (t) => {
  const { app, sim, wsUrl, loginAs, url } = await setup(t, { WS_MAX_BUFFERED_BYTES: '65536' })
  const rec = new Recorder(wsUrl, await loginAs('alice'), url)
  await rec.opened
  await sim.sendAlarms(80, { message: 'x'.repeat(15_000) })
  await rec.until(r => r.alarms().length >= 80)
  t.equal(app.alarmHub.stats.cutOff, 0)
  t.equal(app.alarmHub.clients, 1)
})

test('a replay larger than WS_MAX_BUFFERED_BYTES does not get a reading client cut off', async (t) => {
  const { app, sim, wsUrl, loginAs, url } = await setup(t, { WS_MAX_BUFFERED_BYTES: '65536' })
  const cookie = await loginAs('alice')
  const probe = new Recorder(wsUrl, cookie, url)
  await probe.opened
  await sim.sendAlarms(1000, { message: 'x'.repeat(12_000) })
  await probe.until(r => r.alarms().length >= 1000)
  probe.ws.close()
  await probe.closed
  const rec = new Recorder(`${wsUrl}?since=0`, cookie, url)
  await rec.opened
  // Live alarms right behind a 12 MB replay (more than the kernel's socket buffers hold).
  await sim.sendAlarms(5)
  await rec.until(r => r.alarms().length >= 1005)
  t.same(rec.alarms().map(a => a.seq), Array.from({ length: 1005 }, (_, i) => i + 1))
  t.equal(app.alarmHub.stats.cutOff, 0, 'not cut off')
})
