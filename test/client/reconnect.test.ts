// The browser client's alarm stream (client/legacy-gateway.ts) against a real `ws` server playing
// the gateway (fake-gateway.ts), in Node: `ws` stands in for the browser's WebSocket, and the
// backoff runs on timers the test fires by hand, with a fixed "random".
import t, { type Test } from 'tap'
import { createClient, type AlarmSubscription } from '../../client/legacy-gateway.js'
import { FakeGateway, FakeTimers, NodeWebSocket, recorder, until } from './fake-gateway.js'

function subscribe (t: Test, gw: FakeGateway, opts: { since?: number, random?: () => number } = {}) {
  const timers = new FakeTimers()
  const rec = recorder()
  const client = createClient({ baseUrl: gw.url, WebSocket: NodeWebSocket, timers, random: opts.random ?? (() => 0.5) })
  const sub: AlarmSubscription = client.alarms({ ...rec.handlers, ...(opts.since === undefined ? {} : { since: opts.since }) })
  t.teardown(() => sub.close())
  const opens = (): number => rec.statuses.filter(s => s.state === 'open').length
  const seqs = (): number[] => rec.alarms.map(a => a.seq)
  return { sub, rec, timers, opens, seqs }
}

t.test('after a drop it resumes with ?since=<last seq>: no alarm lost, none twice', async (t) => {
  const gw = await FakeGateway.start(t)
  const { sub, rec, timers, opens, seqs } = subscribe(t, gw)
  await until('open', () => opens() === 1)
  t.equal(gw.urls[0], '/ws/alarms', 'the first connection asks for live alarms only')

  gw.publish(3)
  await until('3 alarms', () => rec.alarms.length === 3)

  gw.drop()
  await until('a reconnect scheduled', () => timers.size === 1)
  t.match(rec.statuses.at(-1), { state: 'reconnecting', attempt: 1, delayMs: 250 }, 'random 0.5 × base 500 ms')
  gw.publish(3) // while the client is away: buffered by the gateway

  t.equal(timers.fire(), 250)
  await until('the buffered alarms', () => rec.alarms.length === 6)
  gw.publish(1)
  await until('a live alarm', () => rec.alarms.length === 7)

  t.equal(gw.urls[1], '/ws/alarms?since=3')
  t.same(seqs(), [1, 2, 3, 4, 5, 6, 7])
  t.same(rec.alarms.map(a => (a.alarm.alarm as { id: string }).id), [1, 2, 3, 4, 5, 6, 7].map(n => `gw-1/${n}`))
  t.ok(rec.alarms.every(a => a.instance === 'gw-1' && typeof a.receivedAt === 'string'))
  t.equal(sub.lastSeq, 7)
  t.equal(opens(), 2)
  t.same(rec.gaps, [])
})

t.test('a first connection without since resumes from the hello lastSeq', async (t) => {
  const gw = await FakeGateway.start(t)
  gw.publish(5)
  const { sub, rec, timers, opens, seqs } = subscribe(t, gw)
  await until('open', () => opens() === 1)
  t.match(rec.statuses.at(-1), { state: 'open', instance: 'gw-1', lastSeq: 5 })
  t.equal(sub.lastSeq, 5, 'nothing seen yet, but a reconnect must not skip what comes next')

  gw.drop()
  await until('a reconnect scheduled', () => timers.size === 1)
  gw.publish(2)
  timers.fire()
  await until('2 alarms', () => rec.alarms.length === 2)
  t.equal(gw.urls[1], '/ws/alarms?since=5')
  t.same(seqs(), [6, 7])
})

t.test('since replays the buffer from there', async (t) => {
  const gw = await FakeGateway.start(t)
  gw.publish(4)
  const { rec, seqs } = subscribe(t, gw, { since: 2 })
  await until('2 alarms', () => rec.alarms.length === 2)
  t.equal(gw.urls[0], '/ws/alarms?since=2')
  t.same(seqs(), [3, 4])
})

t.test('an overlapping replay is not delivered twice', async (t) => {
  const gw = await FakeGateway.start(t)
  gw.replayIgnoresSince = true
  gw.publish(2)
  const { rec, timers, seqs } = subscribe(t, gw, { since: 0 })
  await until('2 alarms', () => rec.alarms.length === 2)
  gw.drop()
  await until('a reconnect scheduled', () => timers.size === 1)
  gw.publish(1)
  timers.fire()
  await until('3 alarms', () => rec.alarms.length === 3)
  gw.publish(1)
  await until('4 alarms', () => rec.alarms.length === 4)
  t.same(seqs(), [1, 2, 3, 4])
})

t.test('backoff: exponential with full jitter, base 500 ms, cap 30 s, reset by a hello', async (t) => {
  const gw = await FakeGateway.start(t)
  const { rec, timers, opens } = subscribe(t, gw)
  await until('open', () => opens() === 1)

  gw.refuse = 503
  gw.drop()
  const delays: number[] = []
  for (let i = 0; i < 9; i++) {
    await until(`reconnect ${i + 1} scheduled`, () => timers.size === 1)
    delays.push(timers.fire())
  }
  // random() = 0.5 of min(30 s, 500 ms × 2^attempt)
  t.same(delays, [250, 500, 1000, 2000, 4000, 8000, 15000, 15000, 15000])
  await until('the 9th reconnect attempt', () => gw.urls.length === 10)
  await until('its backoff', () => timers.size === 1)
  t.equal(gw.urls.length, 10, 'one attempt per timer')
  t.ok(gw.urls.slice(1).every(u => u === '/ws/alarms?since=0'), 'every attempt resumes from the hello lastSeq')
  t.same(rec.ended, [], 'a refused upgrade with a live session is not a session end')

  gw.refuse = null
  timers.fire()
  await until('open again', () => opens() === 2)
  gw.drop()
  await until('a reconnect scheduled', () => timers.size === 1)
  t.equal(timers.fire(), 250, 'a successful hello resets the backoff')
  await until('open a third time', () => opens() === 3)
})

t.test('full jitter spans [0, ceiling)', async (t) => {
  const gw = await FakeGateway.start(t)
  const randoms = [0, 0.999999, 0.1, 0.999999, 0.999999, 0.999999, 0.999999, 0.999999, 0.999999]
  let i = 0
  const { timers, opens } = subscribe(t, gw, { random: () => randoms[i++ % randoms.length] ?? 0 })
  await until('open', () => opens() === 1)
  gw.refuse = 503
  gw.drop()
  const delays: number[] = []
  for (let n = 0; n < randoms.length; n++) {
    await until('a reconnect scheduled', () => timers.size === 1)
    delays.push(timers.fire())
  }
  t.same(delays, [0, 999, 200, 3999, 7999, 15999, 29999, 29999, 29999])
})

t.test('a refused upgrade and a 401 from /api/session end the stream', async (t) => {
  const gw = await FakeGateway.start(t)
  gw.refuse = 401
  gw.sessionStatus = 401
  const { rec, timers } = subscribe(t, gw)
  await until('session end', () => rec.ended.length === 1)
  t.same(rec.ended, ['lost'])
  t.match(rec.statuses.at(-1), { state: 'closed', reason: 'session' })
  t.equal(timers.size, 0, 'no reconnect scheduled')
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(gw.urls.length, 1)
})

t.test('a session frame ends the stream: onSessionEnd, no reconnect', async (t) => {
  const gw = await FakeGateway.start(t)
  const { rec, timers, opens } = subscribe(t, gw)
  await until('open', () => opens() === 1)
  gw.publish(1)
  await until('1 alarm', () => rec.alarms.length === 1)
  gw.endSession('expired')
  await until('session end', () => rec.ended.length === 1)
  t.same(rec.ended, ['expired'])
  t.match(rec.statuses.at(-1), { state: 'closed', reason: 'session' })
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(timers.size, 0, 'no reconnect scheduled')
  t.equal(gw.urls.length, 1)
})

t.test('a new instance in hello: restarted, seq reset, the new buffer from 0', async (t) => {
  const gw = await FakeGateway.start(t)
  const { sub, rec, timers, opens } = subscribe(t, gw)
  await until('open', () => opens() === 1)
  gw.publish(3)
  await until('3 alarms', () => rec.alarms.length === 3)

  gw.restart('gw-2')
  gw.publish(2) // the new process numbers 1, 2 before the client is back
  await until('a reconnect scheduled', () => timers.size === 1)
  timers.fire()
  await until('the new process\'s alarms', () => rec.alarms.length === 5)

  t.same(gw.urls.slice(1), ['/ws/alarms?since=3', '/ws/alarms?since=0'], 'resumes from 0 at once, no backoff')
  t.equal(timers.size, 0)
  t.match(rec.statuses.find(s => s.state === 'restarted'), { state: 'restarted', instance: 'gw-2', previousInstance: 'gw-1' })
  t.same(rec.alarms.map(a => `${a.instance}:${a.seq}`), ['gw-1:1', 'gw-1:2', 'gw-1:3', 'gw-2:1', 'gw-2:2'])
  t.equal(sub.lastSeq, 2)
  t.equal(sub.instance, 'gw-2')
})

t.test('a since from an earlier process (hello lastSeq below it) counts as a restart', async (t) => {
  const gw = await FakeGateway.start(t)
  gw.publish(2)
  const { rec } = subscribe(t, gw, { since: 40 })
  await until('2 alarms', () => rec.alarms.length === 2)
  t.same(gw.urls, ['/ws/alarms?since=40', '/ws/alarms?since=0'])
  t.ok(rec.statuses.some(s => s.state === 'restarted'))
})

t.test('a gap frame is reported and the stream goes on after it', async (t) => {
  const gw = await FakeGateway.start(t, 2)
  const { sub, rec, timers, opens, seqs } = subscribe(t, gw)
  await until('open', () => opens() === 1)
  gw.drop()
  await until('a reconnect scheduled', () => timers.size === 1)
  gw.publish(5) // the buffer keeps 4 and 5 only
  timers.fire()
  await until('2 alarms', () => rec.alarms.length === 2)
  t.same(rec.gaps, [{ from: 1, to: 3 }])
  t.same(seqs(), [4, 5])
  t.equal(sub.lastSeq, 5)
})

t.test('a seq that jumps without a gap frame is reported as a gap', async (t) => {
  const gw = await FakeGateway.start(t)
  const { rec, opens, seqs } = subscribe(t, gw)
  await until('open', () => opens() === 1)
  gw.publish(1)
  gw.seq += 2 // alarms 2 and 3 never sent
  gw.publish(1)
  await until('2 alarms', () => rec.alarms.length === 2)
  t.same(seqs(), [1, 4])
  t.same(rec.gaps, [{ from: 2, to: 3 }])
})

t.test('close() stops everything, whether connected or waiting to reconnect', async (t) => {
  const gw = await FakeGateway.start(t)
  const a = subscribe(t, gw)
  await until('open', () => a.opens() === 1)
  gw.drop()
  await until('a reconnect scheduled', () => a.timers.size === 1)
  a.sub.close()
  t.equal(a.timers.size, 0, 'the pending reconnect is cancelled')
  t.match(a.rec.statuses.at(-1), { state: 'closed', reason: 'closed' })

  const b = subscribe(t, gw)
  await until('open', () => b.opens() === 1)
  b.sub.close()
  await until('the server sees the close', () => gw.sockets.size === 0)
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(b.timers.size, 0)
  t.equal(gw.urls.length, 2, 'no reconnect from either')
  t.same([...a.rec.ended, ...b.rec.ended], [])
})

t.test('frames it does not understand are ignored', async (t) => {
  const gw = await FakeGateway.start(t)
  const { rec, opens, seqs } = subscribe(t, gw)
  await until('open', () => opens() === 1)
  gw.sendRaw('not json')
  gw.sendRaw(Buffer.from([1, 2, 3]))
  gw.sendRaw(JSON.stringify({ type: 'news', text: 'from a newer gateway' }))
  gw.sendRaw(JSON.stringify({ type: 'alarm', seq: 'x', alarm: {} }))
  gw.sendRaw(JSON.stringify([1, 2]))
  gw.publish(1)
  await until('1 alarm', () => rec.alarms.length === 1)
  t.same(seqs(), [1])
  t.same(rec.gaps, [])
})

t.test('a handler that throws does not break the stream', async (t) => {
  const gw = await FakeGateway.start(t)
  const timers = new FakeTimers()
  const seen: number[] = []
  const errors: unknown[] = []
  const original = console.error
  console.error = (err: unknown) => { errors.push(err) }
  t.teardown(() => { console.error = original })
  const client = createClient({ baseUrl: gw.url, WebSocket: NodeWebSocket, timers, random: () => 0.5 })
  const sub = client.alarms({
    onAlarm: (a) => {
      seen.push(a.seq)
      if (a.seq === 1) throw new Error('handler bug')
    }
  })
  t.teardown(() => sub.close())
  await until('connected', () => gw.sockets.size === 1)
  gw.publish(2)
  await until('2 alarms', () => seen.length === 2)
  t.same(seen, [1, 2])
  t.equal(sub.lastSeq, 2)
  t.match(errors, [{ message: 'handler bug' }])
})
