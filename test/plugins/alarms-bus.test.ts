import { test, type Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import WebSocket from 'ws'
import { build, cookieHeader, eventually, JSON_HEADERS, startSimulator } from '../helper.js'
import { freePort } from '../free-port.js'
import { startRedis } from '../redis-server.js'
import type { Simulator } from '../../sim/legacy.js'

// The gateway in cluster mode (ALARM_BUS_URL) against a real redis-server and the simulator:
// plugins/alarms.ts wiring lib/alarm-bus.ts to the feed, the hub, /readyz and /metrics.

interface Frame { type: string, seq?: number, alarm?: { alarm: { id: string } }, from?: number, to?: number, instance?: string, lastSeq?: number }

class Recorder {
  readonly frames: Frame[] = []
  readonly ws: WebSocket
  closeCode: number | undefined
  readonly closed: Promise<number>

  constructor (url: string, cookie: string) {
    this.ws = new WebSocket(url, { headers: { cookie } })
    this.ws.on('message', (data) => { this.frames.push(JSON.parse(data.toString()) as Frame) })
    this.ws.on('error', () => {})
    this.closed = new Promise((resolve) => this.ws.once('close', (code) => { this.closeCode = code; resolve(code) }))
  }

  alarms (): Frame[] { return this.frames.filter(f => f.type === 'alarm') }
  ids (): string[] { return this.alarms().map(f => f.alarm?.alarm.id ?? '') }
  seqs (): number[] { return this.alarms().map(f => f.seq ?? 0) }
}

async function gateway (t: Test, sim: Simulator, redisUrl: string, env: Record<string, string> = {}) {
  const built = await build(t, { sim, listen: true, env: { ALARM_URL: sim.alarmUrl, ALARM_BUS_URL: redisUrl, ...env } })
  const login = async (user: string): Promise<string> => {
    const res = await fetch(`${built.url}/api/login`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ username: user, password: user }) })
    t.equal(res.status, 200, `login ${user}`)
    return cookieHeader(res)
  }
  const ws = (cookie: string, since?: number): Recorder =>
    new Recorder(built.url.replace('http', 'ws') + '/ws/alarms' + (since === undefined ? '' : `?since=${since}`), cookie)
  const ready = async (): Promise<{ status: number, body: { checks: { alarms: string }, failing?: string[] } }> => {
    const res = await fetch(`${built.url}/readyz`)
    return { status: res.status, body: await res.json() as { checks: { alarms: string }, failing?: string[] } }
  }
  const rpc = async (cookie: string): Promise<number> => {
    const res = await fetch(`${built.url}/api/rpc/echo`, { method: 'POST', headers: { ...JSON_HEADERS, cookie }, body: JSON.stringify(['hi']) })
    return res.status
  }
  return { ...built, login, ws, ready, rpc }
}

function metric (text: string, name: string): number {
  const line = text.split('\n').find(l => l.startsWith(name + ' '))
  return Number(line?.split(' ')[1])
}

test('two gateways on one stream: the same instance and seq for each alarm, each once; ingest=false only reads', async (t) => {
  const redis = await startRedis(t)
  const sim = await startSimulator(t)
  const a = await gateway(t, sim, redis.url)
  const b = await gateway(t, sim, redis.url)
  const c = await gateway(t, sim, redis.url, { ALARM_INGEST: 'false' })
  t.ok(await eventually(() => sim.subscribers.length === 2, 5000), 'two ingesting gateways subscribed; the reader did not')
  t.equal(c.app.alarms, null, 'ALARM_INGEST=false: no UDP feed')
  t.ok(await eventually(() => a.app.alarmBus?.ready === true && b.app.alarmBus?.ready === true && c.app.alarmBus?.ready === true, 5000))
  for (const g of [a, b, c]) t.same((await g.ready()).status, 200, '/readyz: ready')

  const recs = [a.ws(await a.login('alice')), b.ws(await b.login('bob')), c.ws(await c.login('carol'))]
  t.ok(await eventually(() => recs.every(r => r.frames.length >= 1), 5000))
  const hello = recs[0]?.frames[0]
  t.match(hello, { type: 'hello', lastSeq: 0 })
  t.match(hello?.instance, /^legacy-gateway:alarms@[0-9a-f]+$/, 'the instance names the stream')
  for (const r of recs) t.equal(r.frames[0]?.instance, hello?.instance, 'the same instance on every gateway')
  t.equal(a.app.instanceId, hello?.instance)

  await sim.sendAlarms(50, { intervalMs: 1 })
  t.ok(await eventually(() => recs.every(r => r.alarms().length >= 50), 10_000), 'every browser got 50 alarms')
  await sleep(200)
  const expected = Array.from({ length: 50 }, (_, i) => i + 1)
  for (const r of recs) t.same(r.seqs(), expected, 'seq 1…50, each once')
  t.same(recs[1]?.ids(), recs[0]?.ids(), 'the same alarm under the same seq everywhere')
  t.same(recs[2]?.ids(), recs[0]?.ids())

  const ma = await (await fetch(`${a.url}/metrics`)).text()
  const mb = await (await fetch(`${b.url}/metrics`)).text()
  t.equal(metric(ma, 'legacy_gateway_alarm_bus_appends_total') + metric(mb, 'legacy_gateway_alarm_bus_appends_total'), 50, 'appended once over both')
  t.equal(metric(ma, 'legacy_gateway_alarm_bus_dedup_total') + metric(mb, 'legacy_gateway_alarm_bus_dedup_total'), 50, 'the other copy deduplicated')
  t.equal(metric(ma, 'legacy_gateway_alarm_bus_connected'), 1)
  t.equal(metric(ma, 'legacy_gateway_alarm_last_seq'), 50)

  // A browser that was on gateway a resumes on gateway c: nothing lost, nothing twice.
  const resumed = c.ws(await c.login('alice'), 30)
  t.ok(await eventually(() => resumed.alarms().length >= 20, 5000))
  t.same(resumed.frames[0], { type: 'hello', instance: hello?.instance, lastSeq: 50 })
  t.same(resumed.seqs(), expected.slice(30), 'the replay after 30 from the stream')
  t.notOk(resumed.frames.some(f => f.type === 'gap'))
  for (const r of [...recs, resumed]) r.ws.close()
})

test('Redis down at start: RPC works, /readyz names alarms, the WebSocket says try later (1013); then it comes up', async (t) => {
  const port = await freePort()
  const sim = await startSimulator(t)
  const g = await gateway(t, sim, `redis://127.0.0.1:${port}`)
  const cookie = await g.login('alice')
  t.equal(await g.rpc(cookie), 200, 'RPC works without Redis')
  const r = await g.ready()
  t.equal(r.status, 503)
  t.same(r.body.failing, ['alarms'], '/readyz names the alarms check')
  t.match(r.body.checks.alarms, /alarm bus unreachable/)
  const refused = g.ws(cookie)
  t.equal(await refused.closed, 1013, 'no hello without the stream: try again later')
  t.same(refused.frames, [])

  // Alarms while Redis is down wait in the bounded queue.
  await sim.sendAlarms(3)
  t.ok(await eventually(() => g.app.alarmBus?.pending === 3, 3000), 'three datagrams wait for Redis')

  await startRedis(t, { port })
  t.ok(await eventually(() => g.app.alarmBus?.ready === true && g.app.alarmBus.lastSeq === 3, 10_000), 'stored once Redis is there')
  t.ok(await eventually(() => g.app.alarmBus?.health().ok === true, 5000))
  t.equal((await g.ready()).status, 200)
  const rec = g.ws(cookie, 0)
  t.ok(await eventually(() => rec.alarms().length === 3, 5000), 'nothing was lost')
  t.same(rec.seqs(), [1, 2, 3])
  rec.ws.close()
})

test('Redis lost while running: RPC works, /readyz fails; restarted empty, clients see a restart and get what waited', async (t) => {
  const redis = await startRedis(t)
  const sim = await startSimulator(t)
  const g = await gateway(t, sim, redis.url)
  t.ok(await eventually(() => g.app.alarmBus?.ready === true && sim.subscribers.length === 1, 5000))
  const cookie = await g.login('alice')
  const rec = g.ws(cookie)
  await sim.sendAlarms(5)
  t.ok(await eventually(() => rec.alarms().length === 5, 5000))
  const before = rec.frames[0]?.instance

  await redis.stop()
  t.ok(await eventually(() => g.app.alarmBus?.health().ok === false, 5000))
  t.equal((await g.ready()).status, 503, '/readyz fails')
  t.same((await g.ready()).body.failing, ['alarms'])
  t.equal(await g.rpc(cookie), 200, 'RPC keeps working')
  const during = g.ws(cookie, 2)
  t.ok(await eventually(() => during.alarms().length === 3, 3000), 'the mirror still answers ?since=')
  await sim.sendAlarms(2)
  t.ok(await eventually(() => g.app.alarmBus?.pending === 2, 3000), 'alarms meanwhile wait')

  await redis.start()
  t.equal(await rec.closed, 1012, 'a Redis restarted empty is a new stream: clients are restarted')
  t.equal(await during.closed, 1012)
  const again = g.ws(cookie, 0)
  t.ok(await eventually(() => again.alarms().length === 2, 10_000), 'the alarms that waited are in the new stream')
  t.not(again.frames[0]?.instance, before, 'under a new instance: the restart is visible')
  t.same(again.seqs(), [1, 2])
  t.ok(await eventually(() => g.app.alarmBus?.health().ok === true, 5000))
  t.equal((await g.ready()).status, 200, 'ready again')
  again.ws.close()
})
