import { test } from 'tap'
import { readFile } from 'node:fs/promises'
import { EventEmitter } from 'node:events'
import Fastify, { type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { setTimeout as sleep } from 'node:timers/promises'
import WebSocket from 'ws'
import metricsPlugin from '../../plugins/metrics.js'
import { build, cookieHeader, login, rpc, startSimulator, JSON_HEADERS } from '../helper.js'

interface Sample { name: string, labels: Record<string, string>, value: number }

/**
 * A strict reader of the Prometheus text format (0.0.4): every line is a HELP, a TYPE or a
 * sample of a declared metric; label values are quoted and escaped; values are numbers.
 */
function parseProm (text: string): { samples: Sample[], types: Map<string, string> } {
  const types = new Map<string, string>()
  const samples: Sample[] = []
  const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})? (-?(?:[0-9.e+-]+|[Nn]a[Nn]|\+Inf|-Inf))(?: -?[0-9]+)?$/
  for (const line of text.split('\n')) {
    if (line === '') continue
    let m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*$/.exec(line)
    if (m !== null) continue
    m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line)
    if (m !== null) {
      types.set(m[1] as string, m[2] as string)
      continue
    }
    m = sample.exec(line)
    if (m === null) throw new Error(`not Prometheus text: ${JSON.stringify(line)}`)
    const name = m[1] as string
    const base = name.replace(/_(bucket|sum|count)$/, '')
    if (!types.has(name) && !types.has(base)) throw new Error(`sample of an undeclared metric: ${line}`)
    const labels: Record<string, string> = {}
    for (const [, key, value] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key as string] = value as string
    }
    samples.push({ name, labels, value: Number(m[3]) })
  }
  return { samples, types }
}

function value (samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value
}

async function scrape (app: FastifyInstance): Promise<Sample[]> {
  const res = await app.inject({ url: '/metrics' })
  if (res.statusCode !== 200) throw new Error(`/metrics: ${res.statusCode}`)
  return parseProm(res.body).samples
}

test('GET /metrics: Prometheus text with process metrics and every series from the start', async (t) => {
  const { app } = await build(t)
  const res = await app.inject({ url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4; charset=utf-8$/)
  const { samples, types } = parseProm(res.body)
  t.equal(types.get('process_cpu_user_seconds_total'), 'counter', 'process metrics')
  t.equal(types.get('nodejs_eventloop_lag_seconds'), 'gauge')
  t.equal(types.get('legacy_gateway_upstream_call_duration_seconds'), 'histogram')
  t.equal(value(samples, 'legacy_gateway_sessions_open'), 0)
  for (const outcome of ['ok', 'fault', 'timeout', 'lost', 'bad_response', 'busy', 'unavailable', 'bad_request']) {
    t.equal(value(samples, 'legacy_gateway_upstream_calls_total', { outcome }), 0, `calls{outcome=${outcome}} exists at 0`)
  }
  for (const reason of ['spoofed', 'oversized', 'slow_client']) {
    t.equal(value(samples, 'legacy_gateway_alarms_dropped_total', { reason }), 0, `dropped{reason=${reason}} exists at 0`)
  }
  t.equal(value(samples, 'legacy_gateway_alarm_feed_up'), -1, 'no ALARM_URL: -1')
  t.equal(value(samples, 'legacy_gateway_alarm_last_received_timestamp_seconds'), 0, 'no ALARM_URL: 0')
  t.equal(value(samples, 'legacy_gateway_max_sessions'), 10000, 'the MAX_SESSIONS default')
  t.equal(value(samples, 'legacy_gateway_websocket_clients'), 0)
})

test('max_sessions is the configured MAX_SESSIONS, beside sessions_open', async (t) => {
  const { app } = await build(t, { env: { MAX_SESSIONS: '2' } })
  await login(app, 'alice')
  const m = await scrape(app)
  t.equal(value(m, 'legacy_gateway_max_sessions'), 2)
  t.equal(value(m, 'legacy_gateway_sessions_open'), 1)
})

test('two apps in one process each count their own calls', async (t) => {
  const a = await build(t)
  const b = await build(t)
  await login(a.app, 'alice')
  t.equal(value(await scrape(a.app), 'legacy_gateway_sessions_opened_total'), 1)
  t.equal(value(await scrape(b.app), 'legacy_gateway_sessions_opened_total'), 0, 'not the global registry')
})

test('metrics move as sessions and calls flow; no user name in them', async (t) => {
  const { app, sim } = await build(t, { env: { LEGACY_TIMEOUT_MS: '300' } })
  const before = await scrape(app)
  t.equal(value(before, 'legacy_gateway_upstream_call_duration_seconds_count', { outcome: 'ok' }), 0)

  const alice = await login(app, 'alice-the-operator')
  let m = await scrape(app)
  t.equal(value(m, 'legacy_gateway_sessions_open'), 1)
  t.equal(value(m, 'legacy_gateway_sessions_opened_total'), 1)
  t.equal(value(m, 'legacy_gateway_upstream_calls_total', { outcome: 'ok' }), 1, 'the login call')

  t.equal((await rpc(app, alice, 'whoami')).statusCode, 200)
  t.equal((await rpc(app, alice, 'fault', [7, 'no'])).statusCode, 422)
  m = await scrape(app)
  t.equal(value(m, 'legacy_gateway_upstream_calls_total', { outcome: 'ok' }), 2)
  t.equal(value(m, 'legacy_gateway_upstream_calls_total', { outcome: 'fault' }), 1)
  t.equal(value(m, 'legacy_gateway_upstream_call_duration_seconds_count', { outcome: 'ok' }), 2)
  t.equal(value(m, 'legacy_gateway_upstream_call_duration_seconds_bucket', { outcome: 'fault', le: '+Inf' }), 1)
  t.ok((value(m, 'legacy_gateway_upstream_call_duration_seconds_sum', { outcome: 'ok' }) ?? 0) > 0)

  // Queue depth while a call is on the wire and another waits behind it.
  const slow = rpc(app, alice, 'sleep', [200])
  const queued = rpc(app, alice, 'whoami')
  await sleep(50)
  m = await scrape(app)
  t.equal(value(m, 'legacy_gateway_upstream_queue_depth'), 2, 'one on the wire, one queued')
  await Promise.all([slow, queued])
  t.equal(value(await scrape(app), 'legacy_gateway_upstream_queue_depth'), 0)

  // A timeout loses the session.
  sim.setFault({ mode: 'hang', count: 1 })
  t.equal((await rpc(app, alice, 'whoami')).statusCode, 504)
  m = await scrape(app)
  t.equal(value(m, 'legacy_gateway_upstream_calls_total', { outcome: 'timeout' }), 1)
  t.equal(value(m, 'legacy_gateway_sessions_ended_total', { reason: 'timeout' }), 1)
  t.equal(value(m, 'legacy_gateway_sessions_open'), 0)

  const bob = await login(app, 'bob')
  await app.inject({ method: 'POST', url: '/api/logout', headers: { ...JSON_HEADERS, cookie: bob }, payload: {} })
  const res = await app.inject({ url: '/metrics' })
  m = parseProm(res.body).samples
  t.equal(value(m, 'legacy_gateway_sessions_ended_total', { reason: 'logout' }), 1)
  t.equal(value(m, 'legacy_gateway_sessions_opened_total'), 2)
  t.notMatch(res.body, /alice|bob/, 'no user name anywhere in the metrics')
  t.notMatch(res.body, /lg_sid|whoami|sleep/, 'no session ids or method names either')
})

test('alarm numbers are read from the feed and the hub at scrape time and never go down', async (t) => {
  // The metrics plugin against stand-ins for the session store, the alarm feed and its hub.
  const store = Object.assign(new EventEmitter(), { size: 0, queueDepth: () => 0 })
  const feed = {
    lastSeq: 0,
    lastDatagramAt: undefined as number | undefined,
    healthy: true,
    stats: { received: 0, malformed: 0, dropped: { spoofed: 0, oversized: 0 }, subscribesSent: 1, subscribeErrors: 0 },
    health () { return this.healthy ? { ok: true as const } : { ok: false as const, reason: 'subscribe failed: EHOSTUNREACH' } }
  }
  const hub = { clients: 0, stats: { forwarded: 0, cutOff: 0 } }
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fp(async (f) => {
    f.decorate('config', { maxSessions: 50 } as never)
    f.decorate('sessions', store as never)
  }, { name: 'sessions' }))
  await app.register(fp(async (f) => {
    f.decorate('alarms', feed as never)
    f.decorate('alarmHub', hub as never)
  }, { name: 'alarms' }))
  await app.register(metricsPlugin)

  const registered = Date.now() / 1000
  let m = await scrape(app)
  t.equal(value(m, 'legacy_gateway_alarm_subscribes_sent_total'), 1)
  t.equal(value(m, 'legacy_gateway_alarm_feed_up'), 1)
  t.equal(value(m, 'legacy_gateway_max_sessions'), 50)
  const since = value(m, 'legacy_gateway_alarm_last_received_timestamp_seconds') ?? 0
  t.ok(since > registered - 5 && since <= Date.now() / 1000, `no datagram yet: silence counts from the feed's start (${since})`)

  feed.stats.received = 5
  hub.stats.forwarded = 12
  feed.stats.malformed = 1
  feed.stats.dropped.spoofed = 2
  feed.stats.dropped.oversized = 3
  hub.stats.cutOff = 4
  feed.lastSeq = 5
  hub.clients = 3
  feed.healthy = false
  feed.lastDatagramAt = 1_700_000_000_250
  m = await scrape(app)
  t.equal(value(m, 'legacy_gateway_alarm_last_received_timestamp_seconds'), 1_700_000_000.25, 'the last datagram, in seconds')
  t.equal(value(m, 'legacy_gateway_alarms_received_total'), 5)
  t.equal(value(m, 'legacy_gateway_alarms_forwarded_total'), 12)
  t.equal(value(m, 'legacy_gateway_alarms_malformed_total'), 1)
  t.equal(value(m, 'legacy_gateway_alarms_dropped_total', { reason: 'spoofed' }), 2)
  t.equal(value(m, 'legacy_gateway_alarms_dropped_total', { reason: 'oversized' }), 3)
  t.equal(value(m, 'legacy_gateway_alarms_dropped_total', { reason: 'slow_client' }), 4)
  t.equal(value(m, 'legacy_gateway_alarm_last_seq'), 5)
  t.equal(value(m, 'legacy_gateway_websocket_clients'), 3)
  t.equal(value(m, 'legacy_gateway_alarm_feed_up'), 0)

  m = await scrape(app)
  t.equal(value(m, 'legacy_gateway_alarms_received_total'), 5, 'a second scrape does not count twice')

  feed.stats.received = 2
  m = await scrape(app)
  t.equal(value(m, 'legacy_gateway_alarms_received_total'), 5, 'a source that goes back never lowers a counter')
  feed.stats.received = 9
  t.equal(value(await scrape(app), 'legacy_gateway_alarms_received_total'), 9)

  store.emit('open', {})
  store.emit('call', 'lost', 0.5)
  store.emit('end', {}, 'lost')
  m = await scrape(app)
  t.equal(value(m, 'legacy_gateway_sessions_opened_total'), 1)
  t.equal(value(m, 'legacy_gateway_upstream_calls_total', { outcome: 'lost' }), 1)
  t.equal(value(m, 'legacy_gateway_upstream_call_duration_seconds_bucket', { outcome: 'lost', le: '0.5' }), 1)
  t.equal(value(m, 'legacy_gateway_upstream_call_duration_seconds_bucket', { outcome: 'lost', le: '0.25' }), 0)
  t.equal(value(m, 'legacy_gateway_sessions_ended_total', { reason: 'lost' }), 1)
})

test('alarms flowing from the simulator through the real feed move the alarm series', async (t) => {
  const sim = await startSimulator(t)
  const { app: gw } = await build(t, { sim, env: { ALARM_URL: sim.alarmUrl } })
  t.ok(gw.alarms, 'the feed is configured')
  // The first subscribe goes out at startup; wait until the simulator knows us.
  for (let i = 0; i < 100 && sim.subscribers.length === 0; i++) await sleep(10)
  await sim.sendAlarms(3)
  for (let i = 0; i < 100 && (gw.alarms?.stats.received ?? 0) < 3; i++) await sleep(10)
  sim.sendRawAlarm('<alarm><id>1</id>')
  for (let i = 0; i < 100 && (gw.alarms?.stats.malformed ?? 0) < 1; i++) await sleep(10)
  // A datagram from another address (not the alarm server's) is dropped as spoofed.
  const { createSocket } = await import('node:dgram')
  const spoofer = createSocket('udp4')
  await new Promise<void>((resolve) => spoofer.bind(0, '127.0.0.2', () => resolve()))
  await new Promise<void>((resolve, reject) => spoofer.send('<alarm><id>x</id></alarm>', gw.alarms?.localPort ?? 0, '127.0.0.1', (err) => err ? reject(err) : resolve()))
  spoofer.close()
  for (let i = 0; i < 100 && (gw.alarms?.stats.dropped.spoofed ?? 0) < 1; i++) await sleep(10)
  const m = await scrape(gw)
  t.equal(value(m, 'legacy_gateway_alarms_received_total'), 4, 'a malformed datagram is received (and forwarded as text)')
  t.equal(value(m, 'legacy_gateway_alarms_malformed_total'), 1)
  t.equal(value(m, 'legacy_gateway_alarm_last_seq'), 4)
  t.equal(value(m, 'legacy_gateway_alarms_dropped_total', { reason: 'spoofed' }), 1)
  t.equal(value(m, 'legacy_gateway_alarm_feed_up'), 1)
  t.ok((value(m, 'legacy_gateway_alarm_subscribes_sent_total') ?? 0) >= 1)
  const last = value(m, 'legacy_gateway_alarm_last_received_timestamp_seconds') ?? 0
  t.equal(last, (gw.alarms?.lastDatagramAt ?? 0) / 1000, 'the time of the last datagram the feed accepted')
  t.ok(last > Date.now() / 1000 - 30, 'and it is recent')
})

test('websocket_clients counts the open alarm WebSockets, also without ALARM_URL', async (t) => {
  const { app, url } = await build(t, { listen: true })
  t.equal(app.alarms, null, 'no alarm feed')
  const res = await fetch(`${url}/api/login`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ username: 'alice', password: 'alice' }) })
  const ws = new WebSocket(url.replace('http', 'ws') + '/ws/alarms', { headers: { cookie: cookieHeader(res) } })
  t.teardown(() => ws.terminate())
  await new Promise((resolve, reject) => { ws.once('message', resolve); ws.once('error', reject) })
  t.equal(value(await scrape(app), 'legacy_gateway_websocket_clients'), 1, 'the client that got its hello')
  ws.close()
  let open: number | undefined = 1
  for (let i = 0; i < 100 && open !== 0; i++) {
    await sleep(20)
    open = value(await scrape(app), 'legacy_gateway_websocket_clients')
  }
  t.equal(open, 0, 'none once it closed')
})

test('docs/OPERATIONS.md lists every metric of the gateway, and no other', async (t) => {
  const { app } = await build(t)
  const { types } = parseProm((await app.inject({ url: '/metrics' })).body)
  const exposed = [...types.keys()].filter(name => name.startsWith('legacy_gateway_')).sort()
  const docs = await readFile(new URL('../../../docs/OPERATIONS.md', import.meta.url), 'utf8')
  const documented = [...docs.matchAll(/^\| `(legacy_gateway_[a-z0-9_]+)` \|/gm)].map(m => m[1] as string).sort()
  t.ok(exposed.length > 15, `${exposed.length} metrics`)
  t.same(documented, exposed, 'the Metrics table of docs/OPERATIONS.md')
})
