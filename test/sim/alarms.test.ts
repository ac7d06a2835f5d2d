import t from 'tap'
import dgram from 'node:dgram'
import { setTimeout as sleep } from 'node:timers/promises'
import { decodeXml } from '../../lib/charset.js'
import { xmlToJson } from '../../lib/xml.js'
import type { Simulator } from '../../sim/legacy.js'
import { eventually, startSim, type Teardown } from './helper.js'

interface Receiver {
  socket: dgram.Socket
  datagrams: Buffer[]
  send (text: string): Promise<void>
}

async function receiver (t: Teardown, sim: Simulator): Promise<Receiver> {
  const socket = dgram.createSocket('udp4')
  const datagrams: Buffer[] = []
  socket.on('message', (msg) => datagrams.push(msg))
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  try {
    socket.setRecvBufferSize(8 * 1024 * 1024)
  } catch {}
  t.teardown(() => new Promise<void>((resolve) => socket.close(() => resolve())))
  const { hostname, port } = new URL(sim.alarmUrl)
  return {
    socket,
    datagrams,
    send: (text) => new Promise((resolve, reject) => socket.send(text, Number(port), hostname, (err) => err ? reject(err) : resolve()))
  }
}

async function subscribed (t: Teardown, sim: Simulator): Promise<Receiver> {
  const r = await receiver(t, sim)
  const before = sim.subscribers.length
  await r.send('SUBSCRIBE')
  await eventually(() => sim.subscribers.length === before + 1)
  return r
}

function alarmOf (datagram: Buffer): Record<string, string> {
  return (xmlToJson(decodeXml(datagram, undefined, 'utf-8')) as { alarm: Record<string, string> }).alarm
}

t.test('subscribe, receive N alarms in order, unsubscribe stops them', async (t) => {
  const sim = await startSim(t)
  t.match(sim.alarmUrl, /^udp:\/\/127\.0\.0\.1:\d+$/)
  const r = await subscribed(t, sim)
  t.match(sim.subscribers, [{ address: '127.0.0.1', port: r.socket.address().port }])

  t.equal(await sim.sendAlarms(50), 50)
  await eventually(() => r.datagrams.length === 50)
  const alarms = r.datagrams.map(alarmOf)
  t.same(alarms.map((a) => Number(a.id)), Array.from({ length: 50 }, (_, i) => i + 1))
  t.match(alarms[0], { level: 'critical', source: 'pump-3', message: '压力过高' })
  t.ok(alarms.every((a) => ['critical', 'major', 'minor', 'warning'].includes(a.level ?? '') && !Number.isNaN(Date.parse(a.time ?? ''))))
  t.match(r.datagrams[0]?.toString('utf8'), /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<alarm><id>1<\/id>/)
  t.equal(sim.alarmsSent, 50)

  t.equal(await sim.sendAlarms(2, { level: 'minor', source: 'tank-9', message: 'x < y' }), 2)
  await eventually(() => r.datagrams.length === 52)
  t.match(alarmOf(r.datagrams[51] ?? Buffer.alloc(0)), { id: '52', level: 'minor', source: 'tank-9', message: 'x < y' })

  await r.send('UNSUBSCRIBE')
  await eventually(() => sim.subscribers.length === 0)
  t.equal(await sim.sendAlarms(5), 0)
  await sleep(100)
  t.equal(r.datagrams.length, 52, 'nothing after unsubscribe')
})

t.test('a subscription lapses after its TTL unless renewed', async (t) => {
  const sim = await startSim(t, { subscriptionTtlMs: 300 })
  const lapsing = await subscribed(t, sim)
  const renewing = await subscribed(t, sim)
  const since = sim.subscribers.find((s) => s.port === renewing.socket.address().port)?.since

  await sleep(200)
  await renewing.send('SUBSCRIBE again, any text after the word')
  await sleep(200)
  t.same(sim.subscribers.map((s) => s.port), [renewing.socket.address().port])
  t.equal(sim.subscribers[0]?.since, since, 'renewal keeps since')
  t.equal(await sim.sendAlarms(1), 1)
  await eventually(() => renewing.datagrams.length === 1)
  t.equal(lapsing.datagrams.length, 0)

  await sleep(400)
  t.same(sim.subscribers, [])
  t.equal(await sim.sendAlarms(1), 0)
})

t.test('every subscriber gets every alarm; custom, raw and charset-encoded alarms', async (t) => {
  const sim = await startSim(t)
  const a = await subscribed(t, sim)
  const b = await subscribed(t, sim)
  await a.send('HELLO') // not a command: ignored
  t.equal(await sim.sendAlarms(3), 6, 'datagrams: alarms × subscribers')

  t.equal(sim.sendAlarm({ level: 'major', source: 'custom', message: 'hand made', extra: 'x' }), 2)
  t.equal(sim.sendAlarm({ id: '999', level: 'minor' }), 2)
  t.throws(() => sim.sendAlarm({ 'bad name': 'x' }), RangeError)
  t.equal(sim.sendRawAlarm('<alarm><id>1'), 2)
  t.equal(sim.sendRawAlarm(Buffer.from('{"json":true}')), 2)

  sim.setCharset('gbk', { declare: false })
  await sim.sendAlarms(1, { message: '压力过高' })
  await eventually(() => a.datagrams.length === 8 && b.datagrams.length === 8)

  t.match(alarmOf(a.datagrams[3] ?? Buffer.alloc(0)), { id: '4', level: 'major', source: 'custom', message: 'hand made', extra: 'x' })
  t.same(alarmOf(a.datagrams[4] ?? Buffer.alloc(0)), { id: '999', level: 'minor' })
  t.equal(a.datagrams[5]?.toString(), '<alarm><id>1')
  t.equal(a.datagrams[6]?.toString(), '{"json":true}')
  const gbk = a.datagrams[7] ?? Buffer.alloc(0)
  t.notMatch(gbk.toString('latin1'), /^<\?xml/)
  t.match(decodeXml(gbk, undefined, 'gbk'), /<message>压力过高<\/message>/)
  t.same(b.datagrams.map(String), a.datagrams.map(String))
})

t.test('alarms are escaped as the gateway writes: a CR survives, what XML cannot carry is refused', async (t) => {
  const sim = await startSim(t)
  const r = await subscribed(t, sim)
  t.equal(sim.sendAlarm({ id: '1', message: 'line 1\r\nline 2 <&> "q" \'a\'' }), 1)
  await eventually(() => r.datagrams.length === 1)
  t.match(r.datagrams[0]?.toString(), /<message>line 1&#13;\nline 2 &lt;&amp;&gt; &quot;q&quot; 'a'<\/message>/)
  t.same(alarmOf(r.datagrams[0] ?? Buffer.alloc(0)), { id: '1', message: 'line 1\r\nline 2 <&> "q" \'a\'' })
  t.throws(() => sim.sendAlarm({ message: 'bell \u0007' }), { name: 'TypeError', message: /U\+0007/ }, 'not a document no reader would take')
})

t.test('timer alarms every alarmIntervalMs', async (t) => {
  const sim = await startSim(t, { alarmIntervalMs: 50 })
  const r = await subscribed(t, sim)
  await eventually(() => r.datagrams.length >= 3, 3000)
  const ids = r.datagrams.map((d) => Number(alarmOf(d).id))
  t.same(ids, [...ids].sort((x, y) => x - y), 'increasing ids')
})

t.test('paced and bulk sends', async (t) => {
  const sim = await startSim(t)
  const r = await subscribed(t, sim)
  const started = Date.now()
  t.equal(await sim.sendAlarms(4, { intervalMs: 50 }), 4)
  t.ok(Date.now() - started >= 140, 'paced')

  // 20,000 datagrams without blocking the event loop for the whole burst
  let ticks = 0
  const ticker = setInterval(() => { ticks++ }, 5)
  const bulkStarted = Date.now()
  const sent = await sim.sendAlarms(20_000)
  clearInterval(ticker)
  t.equal(sent, 20_000)
  t.ok(ticks > 0, 'timers ran during the burst')
  t.ok(Date.now() - bulkStarted < 10_000)
  await eventually(() => r.datagrams.length > 4, 2000)
})

t.test('close during a paced send ends it', async (t) => {
  const sim = await startSim(t)
  await subscribed(t, sim)
  const sending = sim.sendAlarms(1000, { intervalMs: 1000 })
  await sleep(50)
  await sim.close()
  t.equal(await sending, 1)
})
