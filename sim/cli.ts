import { parseArgs } from 'node:util'
import { createSimulator, type SimLogger } from './legacy.js'

const USAGE = `usage: npm run sim -- [options]     (or: node dist/sim/cli.js [options])

  --host HOST                 SIM_HOST               default 127.0.0.1
  --rpc-port PORT             SIM_RPC_PORT           default 8080
  --control-port PORT         SIM_CONTROL_PORT       default 8081
  --alarm-port PORT           SIM_ALARM_PORT         default 9001
  --alarm-interval-ms MS      SIM_ALARM_INTERVAL_MS  default 5000 (0: no timer alarms)
  --subscription-ttl-ms MS    SIM_SUBSCRIPTION_TTL_MS default 90000
  --quiet                     do not log events, only the URLs
  --help

Port 0 picks a free port. Options win over environment variables.`

class UsageError extends Error {}

function integer (name: string, raw: string | undefined, fallback: number, max: number): number {
  if (raw === undefined || raw.trim() === '') return fallback
  const value = Number(raw)
  if (!/^\d+$/.test(raw.trim()) || value > max) throw new UsageError(`${name} must be an integer in 0..${max}, got ${JSON.stringify(raw)}`)
  return value
}

function readConfig (argv: string[], env: NodeJS.ProcessEnv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string' },
      'rpc-port': { type: 'string' },
      'control-port': { type: 'string' },
      'alarm-port': { type: 'string' },
      'alarm-interval-ms': { type: 'string' },
      'subscription-ttl-ms': { type: 'string' },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false }
    },
    strict: true
  })
  return {
    help: values.help === true,
    quiet: values.quiet === true,
    host: values.host ?? env.SIM_HOST ?? '127.0.0.1',
    rpcPort: integer('rpc port', values['rpc-port'] ?? env.SIM_RPC_PORT, 8080, 65535),
    controlPort: integer('control port', values['control-port'] ?? env.SIM_CONTROL_PORT, 8081, 65535),
    alarmPort: integer('alarm port', values['alarm-port'] ?? env.SIM_ALARM_PORT, 9001, 65535),
    alarmIntervalMs: integer('alarm interval', values['alarm-interval-ms'] ?? env.SIM_ALARM_INTERVAL_MS, 5000, 2 ** 31 - 1),
    subscriptionTtlMs: integer('subscription ttl', values['subscription-ttl-ms'] ?? env.SIM_SUBSCRIPTION_TTL_MS, 90_000, 2 ** 31 - 1)
  }
}

const consoleLogger: SimLogger = {
  info: (obj, msg) => console.log(`${new Date().toISOString()} ${msg ?? ''} ${JSON.stringify(obj)}`),
  warn: (obj, msg) => console.warn(`${new Date().toISOString()} WARN ${msg ?? ''} ${JSON.stringify(obj, errorReplacer)}`)
}

function errorReplacer (_key: string, value: unknown): unknown {
  return value instanceof Error ? { message: value.message, code: (value as NodeJS.ErrnoException).code } : value
}

async function main (): Promise<void> {
  let config: ReturnType<typeof readConfig>
  try {
    config = readConfig(process.argv.slice(2), process.env)
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`)
    process.exitCode = 2
    return
  }
  if (config.help) {
    console.log(USAGE)
    return
  }

  const sim = await createSimulator({ ...config, logger: config.quiet ? undefined : consoleLogger })
  const every = config.alarmIntervalMs > 0 ? `a sample alarm every ${config.alarmIntervalMs} ms to subscribers` : 'no timer alarms'
  console.log([
    'legacy simulator running',
    `  rpc:     ${sim.rpcUrl}`,
    `  xml:     ${sim.origin}/xml/devices`,
    `  control: ${sim.controlUrl}`,
    `  alarms:  ${sim.alarmUrl} (${every})`,
    '  login:   demo / demo (any user whose password equals the user name)'
  ].join('\n'))

  let closing = false
  const shutdown = (signal: NodeJS.Signals): void => {
    if (closing) {
      // a second signal: the user does not want to wait
      process.exit(1)
    }
    closing = true
    console.log(`${signal}: closing the simulator`)
    sim.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err)
        process.exit(1)
      }
    )
  }
  process.on('SIGINT', shutdown)
  process.on('SIGTERM', shutdown)
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
