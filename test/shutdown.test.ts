import { test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { eventually, startSimulator } from './helper.js'
import { startGateway, exitWithin, request, type HttpAnswer } from './gateway-process.js'
import { methodOf, rpcAnswer, startHostileLegacy, trickle } from './hostile-legacy.js'

// The real process, signals and all: node dist/server.js in front of a simulator.

async function loginOver (url: string, user: string): Promise<string> {
  const res = await request(`${url}/api/login`, { body: { username: user, password: user } })
  if (res.status !== 200) throw new Error(`login ${user}: ${res.status} ${res.body}`)
  return res.cookies()
}

test('SIGTERM with a call in flight: the call completes, new requests get 503, sessions are logged out, exit 0', async (t) => {
  const sim = await startSimulator(t)
  const gw = await startGateway(t, { LEGACY_URL: sim.rpcUrl, SHUTDOWN_TIMEOUT_MS: '5000' })
  const cookie = await loginOver(gw.url, 'alice')
  const socketId = sim.sockets().find(s => s.user === 'alice')?.id
  t.ok(socketId !== undefined, 'alice holds a legacy socket')

  const inFlight = request(`${gw.url}/api/rpc/sleep`, { body: [800], headers: { cookie } })
  await sleep(100)
  const signalledAt = Date.now()
  gw.child.kill('SIGTERM')
  await gw.waitForLog(line => line.msg === 'shutting down')

  // A new request while the call drains: 503 SHUTTING_DOWN, or refused once the port is closed.
  let late: HttpAnswer | Error
  try {
    late = await request(`${gw.url}/api/session`, { headers: { cookie } })
  } catch (err) {
    late = err as Error
  }
  if (late instanceof Error) {
    t.match(late.message, /ECONNREFUSED|ECONNRESET|socket hang up/, 'refused once the listener is closed')
  } else {
    t.equal(late.status, 503)
    t.equal(late.json().code, 'SHUTTING_DOWN')
    t.equal(late.json().statusCode, 503)
  }

  const res = await inFlight
  t.equal(res.status, 200, 'the call in flight completes')
  t.same(res.json(), { result: 800 })
  t.ok(Date.now() - signalledAt >= 600, 'the call was not cut short')

  t.equal(await exitWithin(gw, 8000), 0, 'exit 0')
  const logout = sim.ledger.find(e => e.method === 'logout')
  t.ok(logout, 'the legacy logout was called')
  t.equal(logout?.user, 'alice', 'for the session')
  t.equal(logout?.socketId, socketId, 'on its own socket')
  t.ok(sim.ledger.findIndex(e => e.method === 'sleep') < sim.ledger.findIndex(e => e.method === 'logout'), 'after the call in flight')
  t.ok(await eventually(() => sim.sockets().length === 0), 'the simulator sees every socket closed')
  t.ok(gw.logs.some(l => l.msg === 'session ended' && l.reason === 'shutdown' && l.user === 'alice'), 'the session end is logged with its user')
  t.ok(gw.logs.some(l => l.msg === 'shut down'), 'the process says it is done')
})

test('a second SIGTERM while a call hangs exits at once', async (t) => {
  const sim = await startSimulator(t)
  const gw = await startGateway(t, { LEGACY_URL: sim.rpcUrl, SHUTDOWN_TIMEOUT_MS: '20000', LEGACY_TIMEOUT_MS: '30000' })
  const cookie = await loginOver(gw.url, 'alice')
  sim.setFault({ mode: 'hang' })
  const hanging = request(`${gw.url}/api/rpc/whoami`, { body: [], headers: { cookie } }).catch((err: Error) => err)
  await sleep(100)
  gw.child.kill('SIGTERM')
  await gw.waitForLog(line => line.msg === 'shutting down')
  await sleep(200)
  t.equal(gw.child.exitCode, null, 'the first signal waits for the hanging call')
  const second = Date.now()
  gw.child.kill('SIGTERM')
  // close-with-grace: a second signal is process.exit(1), without waiting for anything.
  t.equal(await exitWithin(gw, 2000), 1, 'exit 1 at once')
  t.ok(Date.now() - second < 2000)
  t.ok(await hanging instanceof Error, 'the hanging call is cut off with the process')
  t.ok(gw.logs.some(l => typeof l.msg === 'string' && l.msg.includes('second SIGTERM')), 'logged as such')
  t.ok(await eventually(() => sim.sockets().length === 0), 'the kernel closed the pinned socket')
})

// SHUTDOWN_TIMEOUT_MS bounds the sessions' drain (plugins/sessions.ts preClose); past it the
// remaining pinned sockets are destroyed, so a call hanging on one is answered (401 SESSION_LOST)
// instead of holding server.close() until LEGACY_TIMEOUT_MS.
test('a call that hangs past SHUTDOWN_TIMEOUT_MS does not hold the process', async (t) => {
  const sim = await startSimulator(t)
  const gw = await startGateway(t, { LEGACY_URL: sim.rpcUrl, SHUTDOWN_TIMEOUT_MS: '500', LEGACY_TIMEOUT_MS: '30000' })
  const cookie = await loginOver(gw.url, 'alice')
  sim.setFault({ mode: 'hang' })
  const hanging = request(`${gw.url}/api/rpc/whoami`, { body: [], headers: { cookie } }).catch((err: Error) => err)
  await sleep(100)
  const signalledAt = Date.now()
  gw.child.kill('SIGTERM')
  const code = await exitWithin(gw, 8000)
  const took = Date.now() - signalledAt
  t.equal(code, 0, 'exit 0: the bound is part of a graceful shutdown')
  t.ok(took < 3000, `exited ${took} ms after SIGTERM (bound 500 ms)`)
  const answer = await hanging
  if (!(answer instanceof Error)) {
    t.equal(answer.status, 401, 'the hanging call is answered: its session is gone')
    t.equal(answer.json().code, 'SESSION_LOST')
  } else {
    t.pass('the hanging call was cut off')
  }
  t.ok(await eventually(() => sim.sockets().length === 0), 'the pinned socket is closed')
})

// A legacy server that trickles one answer and never answers a logout: the shutdown bound holds
// for the whole shutdown (drain, logouts, connection close), whichever stage hangs.
test('a trickling call and a logout never answered: exit 0 within SHUTDOWN_TIMEOUT_MS, both answered', async (t) => {
  const legacy = await startHostileLegacy(t, (req) => {
    const method = methodOf(req)
    if (method === 'stall') {
      const whole = rpcAnswer('slow')
      const split = whole.indexOf('\r\n\r\n') + 4
      return [whole.subarray(0, split), ...trickle(whole.subarray(split, split + 40), 500)]
    }
    if (method === 'logout') return [{ wait: 60_000 }]
    return undefined
  })
  const gw = await startGateway(t, { LEGACY_URL: legacy.url, SHUTDOWN_TIMEOUT_MS: '2000', LEGACY_TIMEOUT_MS: '30000' })
  const alice = await loginOver(gw.url, 'alice')
  const bob = await loginOver(gw.url, 'bob')
  const call = request(`${gw.url}/api/rpc/stall`, { body: [], headers: { cookie: alice } }).catch((err: Error) => err)
  // bob logs out himself; the legacy server never answers his logout.
  const logout = request(`${gw.url}/api/logout`, { body: {}, headers: { cookie: bob } }).catch((err: Error) => err)
  await legacy.waitForRequests(4)
  await sleep(200)
  const signalledAt = Date.now()
  gw.child.kill('SIGTERM')
  const code = await exitWithin(gw, 20_000)
  const took = Date.now() - signalledAt
  t.equal(code, 0, 'exit 0')
  // Process exit and its observation take a few tens of ms on a loaded machine.
  t.ok(took < 2000 + 300, `exited ${took} ms after SIGTERM (SHUTDOWN_TIMEOUT_MS 2000)`)
  const answer = await call
  t.notOk(answer instanceof Error, `the trickling call is answered (${answer instanceof Error ? answer.message : answer.status})`)
  if (!(answer instanceof Error)) {
    t.equal(answer.status, 401)
    t.equal(answer.json().code, 'SESSION_LOST')
  }
  const loggedOut = await logout
  t.notOk(loggedOut instanceof Error, `the logout is answered (${loggedOut instanceof Error ? loggedOut.message : loggedOut.status})`)
  if (!(loggedOut instanceof Error)) t.equal(loggedOut.status, 204)
  t.ok(legacy.requests.filter(r => methodOf(r) === 'logout').length >= 1, 'the legacy logout was tried')
  t.ok(await eventually(() => legacy.open() === 0), 'every pinned socket is closed')
})

test('a browser\'s logout in flight that the legacy server never answers: exit 0 within SHUTDOWN_TIMEOUT_MS, the logout answered', async (t) => {
  const legacy = await startHostileLegacy(t, (req) => methodOf(req) === 'logout' ? [{ wait: 60_000 }] : undefined)
  const gw = await startGateway(t, { LEGACY_URL: legacy.url, SHUTDOWN_TIMEOUT_MS: '1000', LEGACY_TIMEOUT_MS: '30000' })
  const bob = await loginOver(gw.url, 'bob')
  const logout = request(`${gw.url}/api/logout`, { body: {}, headers: { cookie: bob } }).catch((err: Error) => err)
  await legacy.waitForRequests(2)
  await sleep(100)
  const signalledAt = Date.now()
  gw.child.kill('SIGTERM')
  const code = await exitWithin(gw, 20_000)
  const took = Date.now() - signalledAt
  t.equal(code, 0, 'exit 0')
  t.ok(took < 1000 + 300, `exited ${took} ms after SIGTERM (SHUTDOWN_TIMEOUT_MS 1000)`)
  const loggedOut = await logout
  t.notOk(loggedOut instanceof Error, `the logout is answered (${loggedOut instanceof Error ? loggedOut.message : loggedOut.status})`)
  if (!(loggedOut instanceof Error)) t.equal(loggedOut.status, 204)
  t.ok(await eventually(() => legacy.open() === 0), 'the pinned socket is closed')
})
