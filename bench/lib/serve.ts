// Child-process entry for the peers of the system under test: `node serve.js seed-style|floor|simulator`,
// started by bench/lib/processes.ts with an IPC channel. Each runs alone in its process so that its
// CPU and its memory are its own; the parent (the load generator) only talks to it over loopback and
// asks it for memory figures over IPC. (The gateway itself runs as `node dist/server.js`, with
// bench/lib/probe.ts preloaded to answer the same memory queries.)
import type { AddressInfo } from 'node:net'
import type { Server } from 'node:http'
import { createSimulator, type Simulator } from '../../sim/legacy.js'
import { createSeedStyleServer } from '../peers/seed-style.js'
import { createFloorServer } from '../peers/floor.js'
import { memoryAfterGc, type FromChild, type ToChild } from './probe.js'

function send (message: FromChild): void {
  process.send?.(message)
}

async function startPeer (kind: 'seed-style' | 'floor'): Promise<{ url: string, close: () => Promise<void> }> {
  const legacyUrl = process.env.LEGACY_URL
  if (legacyUrl === undefined) throw new Error('LEGACY_URL is required')
  const server: Server = (kind === 'floor' ? createFloorServer : createSeedStyleServer)({ legacyUrl: new URL(legacyUrl) })
  server.keepAliveTimeout = 72_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
}

/**
 * Alarms at `rate` per second for `durationMs`, each stamped with its send time (ms since the epoch,
 * sub-millisecond, from performance.timeOrigin + performance.now(), which is the same clock in every
 * process of this machine to well under a millisecond).
 */
async function sendAlarms (sim: Simulator, rate: number, durationMs: number): Promise<{ sent: number, datagrams: number }> {
  const tickMs = 5
  const started = performance.now()
  let sent = 0
  let datagrams = 0
  const total = Math.round(rate * durationMs / 1000)
  while (sent < total) {
    const due = Math.min(total, Math.floor((performance.now() - started) * rate / 1000) + 1)
    while (sent < due) {
      sent++
      datagrams += sim.sendAlarm({
        id: String(sent),
        level: 'minor',
        source: 'bench',
        message: '压力过高 pressure high',
        sentAt: (performance.timeOrigin + performance.now()).toFixed(3)
      })
    }
    await new Promise((resolve) => setTimeout(resolve, tickMs))
  }
  return { sent, datagrams }
}

async function main (): Promise<void> {
  const kind = process.argv[2]
  let close: () => Promise<void>
  if (kind === 'seed-style' || kind === 'floor') {
    const seed = await startPeer(kind)
    close = seed.close
    send({ type: 'ready', url: seed.url })
  } else if (kind === 'simulator') {
    const sim = await createSimulator({ host: '127.0.0.1', subscriptionTtlMs: 10 * 60_000 })
    // The simulator keeps a ledger of every request for the tests; under load it would grow without
    // bound and make the simulator slower as the run goes on.
    const ledgerTimer = setInterval(() => sim.clearLedger(), 500)
    ledgerTimer.unref()
    close = async () => {
      clearInterval(ledgerTimer)
      await sim.close()
    }
    process.on('message', (message: ToChild) => {
      if (message.type !== 'alarms') return
      sendAlarms(sim, message.rate, message.durationMs).then(
        (r) => send({ type: 'alarms-done', ...r }),
        (err: unknown) => send({ type: 'error', message: String(err) })
      )
    })
    send({ type: 'ready', url: sim.origin, rpcUrl: sim.rpcUrl, alarmUrl: sim.alarmUrl })
  } else {
    throw new Error(`unknown system ${String(kind)}: seed-style, floor or simulator`)
  }

  process.on('message', (message: ToChild) => {
    if (message.type === 'mem') send({ type: 'mem', usage: memoryAfterGc() })
    if (message.type === 'clock') send({ type: 'clock', now: performance.timeOrigin + performance.now() })
    if (message.type === 'stop') {
      // A bounded close: --cpu-prof writes its profile on exit, so the exit must be a clean one.
      const timer = setTimeout(() => process.exit(0), 5000)
      close().finally(() => {
        clearTimeout(timer)
        process.exit(0)
      })
    }
  })
  // The parent went away: do not linger.
  process.on('disconnect', () => process.exit(0))
}

main().catch((err: unknown) => {
  send({ type: 'error', message: err instanceof Error ? err.stack ?? err.message : String(err) })
  process.exit(1)
})
