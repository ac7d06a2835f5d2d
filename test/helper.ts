import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance, type FastifyPluginAsync, type LightMyRequestResponse } from 'fastify'
import type { Test } from 'tap'
import app, { serverOptions } from '../app.js'
import { loadConfig, type AppConfig } from '../lib/config.js'
import { resolveConfig, startDemo } from '../lib/demo.js'
import { loggerOptions, type LogDestination } from '../lib/logger.js'
import { createSimulator, type Simulator, type SimulatorOptions } from '../sim/legacy.js'

export interface Built {
  app: FastifyInstance
  sim: Simulator
  config: AppConfig
}

export interface BuildOptions {
  /** Overrides the configuration exactly as environment variables would. */
  env?: Record<string, string>
  /** The legacy system; by default a fresh simulator. */
  sim?: Simulator
  /** Demo mode, as `npm start` without LEGACY_URL: the gateway starts its own simulator (lib/demo.ts). */
  demo?: boolean
  listen?: boolean
  /** Receives the JSON log lines (level info unless LOG_LEVEL says otherwise). */
  logStream?: LogDestination
  /** Registered after the gateway, before it is ready: a test's own routes beside the gateway's. */
  plugin?: FastifyPluginAsync
}

/** A simulator on ephemeral loopback ports, closed when the test ends. */
export async function startSimulator (t: Test, opts: SimulatorOptions = {}): Promise<Simulator> {
  const sim = await createSimulator({ host: '127.0.0.1', ...opts })
  t.teardown(() => sim.close())
  return sim
}

/** The configuration as server.ts resolves it: against `sim`, or in demo mode the demo's own simulator. */
async function configure (t: Test, opts: BuildOptions): Promise<{ config: AppConfig, sim: Simulator }> {
  const env = {
    LOG_LEVEL: opts.logStream !== undefined ? 'info' : process.env.TEST_LOG_LEVEL ?? 'silent',
    LOGIN_RATE_LIMIT: '0',
    ...opts.env
  }
  if (opts.demo === true) {
    const demo = await startDemo(loadConfig(env))
    t.teardown(() => demo.simulator.close())
    return { config: demo.config, sim: demo.simulator }
  }
  const sim = opts.sim ?? await startSimulator(t)
  // An env that unsets LEGACY_URL gets demo mode, as it would in production.
  const resolved = await resolveConfig(loadConfig({ LEGACY_URL: sim.rpcUrl, COOKIE_SECURE: 'false', ...env }))
  t.teardown(() => resolved.simulator?.close())
  return { config: resolved.config, sim: resolved.simulator ?? sim }
}

/**
 * Builds the gateway (never listening unless asked) as server.ts does: the same configuration,
 * server options (timeouts included) and production's logger (lib/logger.ts).
 */
export async function build (t: Test, opts: BuildOptions = {}): Promise<Built & { url: string }> {
  const { config, sim } = await configure(t, opts)
  const fastify = Fastify({ ...loggerOptions(config, opts.logStream), ...serverOptions(config) })
  await fastify.register(app, { config })
  if (opts.plugin !== undefined) await fastify.register(opts.plugin)
  t.teardown(() => fastify.close())
  let url = ''
  if (opts.listen === true) url = await fastify.listen({ host: '127.0.0.1', port: 0 })
  else await fastify.ready()
  return { app: fastify, sim, config, url }
}

export const JSON_HEADERS = { 'content-type': 'application/json' }

/** Logs in through the gateway and returns the Cookie header to send afterwards. */
export async function login (fastify: FastifyInstance, user: string, password = user): Promise<string> {
  const res = await fastify.inject({ method: 'POST', url: '/api/login', headers: JSON_HEADERS, payload: { username: user, password } })
  if (res.statusCode !== 200) throw new Error(`login ${user}: ${res.statusCode} ${res.body}`)
  return cookieHeader(res)
}

export function cookieHeader (res: LightMyRequestResponse | Response): string {
  const raw = 'cookies' in res && Array.isArray(res.cookies)
    ? (res.cookies as Array<{ name: string, value: string }>).map(c => `${c.name}=${c.value}`)
    : (res as Response).headers.getSetCookie().map(c => c.split(';')[0] ?? '')
  return raw.join('; ')
}

export async function rpc (fastify: FastifyInstance, cookie: string, method: string, params: unknown[] = []): Promise<LightMyRequestResponse> {
  return await fastify.inject({ method: 'POST', url: `/api/rpc/${method}`, headers: { ...JSON_HEADERS, cookie }, payload: params })
}

/** Polls `check` every 20 ms until it holds (true) or `timeoutMs` passes (false). */
export async function eventually (check: () => boolean, timeoutMs = 2000): Promise<boolean> {
  const until = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > until) return false
    await sleep(20)
  }
  return true
}
