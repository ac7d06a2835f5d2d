/**
 * Demo mode (CONTRACT §2): with LEGACY_URL unset, the built-in simulator (sim/legacy.ts) plays the
 * legacy system on loopback, RPC and alarms, and the configuration points at it. server.ts runs it
 * for `npm start`; tests build the gateway with it in-process.
 */
import type { AppConfig, Config } from './config.js'
import type { Simulator } from '../sim/legacy.js'

export interface Demo {
  /** The configuration with the simulator as the legacy system (and as the alarm server, unless ALARM_URL is set). */
  config: AppConfig
  /** Closed by whoever started it, after the gateway. */
  simulator: Simulator
}

/** What the demo's log lines need: pino's and Fastify's loggers fit. */
export interface DemoLog {
  warn: (obj: object, msg: string) => void
}

/** The simulator emits a sample alarm this often. */
const ALARM_INTERVAL_MS = 5000

/** Starts the simulator on ephemeral loopback ports and says so, loudly, in `log`. */
export async function startDemo (config: Config, log?: DemoLog): Promise<Demo> {
  // Loaded here: a gateway with LEGACY_URL never loads the simulator's code.
  const { createSimulator } = await import('../sim/legacy.js')
  const simulator = await createSimulator({ host: '127.0.0.1', alarmIntervalMs: ALARM_INTERVAL_MS })
  const alarm = new URL(simulator.alarmUrl)
  log?.warn({ legacyUrl: simulator.rpcUrl, alarmUrl: simulator.alarmUrl, controlUrl: simulator.controlUrl },
    'DEMO MODE: LEGACY_URL is not set, so the built-in legacy simulator is running on loopback')
  return {
    config: {
      ...config,
      legacyUrl: new URL(simulator.rpcUrl),
      alarmUrl: config.alarmUrl ?? { host: alarm.hostname, port: Number(alarm.port) }
    },
    simulator
  }
}

/**
 * The configuration to run with: the legacy system of LEGACY_URL, or without it the demo's
 * simulator (then `simulator` is set, for its owner to close).
 */
export async function resolveConfig (config: Config, log?: DemoLog): Promise<{ config: AppConfig, simulator: Simulator | undefined }> {
  if (config.legacyUrl !== undefined) return { config, simulator: undefined }
  return await startDemo(config, log)
}

/** The log line that shows how to try the demo once the gateway listens at `address`. */
export function tryDemo (address: string): string {
  return `try it: curl -c /tmp/lg.txt -H 'content-type: application/json' -d '{"username":"demo","password":"demo"}' ${address}/api/login`
}
