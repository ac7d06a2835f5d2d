import { type ChaosContext, now, sleep } from './context.js'
import type { Random } from './random.js'
import type { SessionBook, VirtualUser } from './users.js'

export type LegacyFault = 'kill' | 'restart' | 'hang' | 'malformed' | 'entity' | 'truncated' | 'slow' | 'close'

const ALL: readonly LegacyFault[] = ['kill', 'restart', 'hang', 'malformed', 'entity', 'truncated', 'slow', 'close']

/**
 * The legacy side misbehaving: users' sockets killed, the server crashing and coming back, and
 * answers that hang past the timeout, are malformed, carry an entity-expansion bomb, are cut in
 * half, come slowly, or close the socket. The simulator applies a fault mode to the next `count`
 * answers of anyone (logins and logouts included).
 */
export class LegacyFaults {
  constructor (
    private readonly ctx: ChaosContext,
    private readonly book: SessionBook,
    private readonly users: readonly VirtualUser[],
    private readonly rng: Random
  ) {}

  async inject (fault: LegacyFault): Promise<void> {
    const { sim, timeoutMs } = this.ctx
    const rng = this.rng
    this.ctx.faults.inc(`legacy: ${fault}`)
    switch (fault) {
      case 'kill': {
        const n = rng.int(1, 3)
        for (let i = 0; i < n; i++) {
          const killed = this.book.killUser(rng.pick(this.users).user)
          this.ctx.faults.inc('legacy: sockets killed', killed)
        }
        return
      }
      case 'restart':
        await this.book.stopSim()
        await sleep(rng.int(100, 1500))
        await sim.start()
        return
      case 'hang':
        sim.setFault({ mode: 'hang', count: rng.int(1, 3) })
        return
      case 'slow':
        // Mostly within the timeout (slow but fine); now and then past it.
        sim.setFault({ mode: 'slow', count: rng.int(5, 40), delayMs: rng.chance(0.8) ? rng.int(20, timeoutMs - 150) : rng.int(timeoutMs + 50, timeoutMs * 2) })
        return
      case 'malformed':
      case 'entity':
      case 'truncated':
        sim.setFault({ mode: fault, count: rng.int(1, 5) })
        return
      case 'close':
        sim.setFault({ mode: 'close', count: rng.int(1, 2) })
    }
  }

  async run (until: number): Promise<void> {
    const first = this.rng.shuffle(ALL)
    try {
      while (now() < until) {
        await sleep(this.rng.int(250, 1200))
        if (now() >= until) break
        const fault = first.shift() ?? this.rng.weighted<LegacyFault>({ kill: 4, restart: 1, hang: 2, malformed: 2, entity: 1, truncated: 1, slow: 3, close: 1 })
        await this.inject(fault)
      }
    } finally {
      // The last fault is over: the legacy server is up and answers normally.
      this.ctx.sim.setFault({ mode: 'none' })
      if (!this.ctx.sim.running) await this.ctx.sim.start()
    }
  }
}
