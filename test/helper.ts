import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import type { Test } from 'tap'
import app, { serverOptions } from '../app.js'
import { loadConfig, type Config } from '../lib/config.js'
import { loggerOptions, type LogDestination } from '../lib/logger.js'
import { createSimulator, type Simulator, type SimulatorOptions } from '../sim/legacy.js'

export interface Built {
  app: FastifyInstance
  sim: Simulator
  config: Config
}

/** A simulator on ephemeral loopback ports, closed when the test ends. */
export async function startSimulator (t: Test, opts: SimulatorOptions = {}): Promise<Simulator> {
  const sim = await createSimulator({ host: '127.0.0.1', ...opts })
  t.teardown(() => sim.close())
  return sim
}

/**
 * Builds the gateway (never listening unless asked) against a simulator. `env` overrides the
 * configuration exactly as environment variables would. The logger is production's
 * (lib/logger.ts); `logStream` receives its JSON lines (level info unless LOG_LEVEL says otherwise).
 */
export async function build (t: Test, opts: { env?: Record<string, string>, sim?: Simulator, listen?: boolean, logStream?: LogDestination } = {}): Promise<Built & { url: string }> {
  const sim = opts.sim ?? await startSimulator(t)
  const config = loadConfig({
    LEGACY_URL: sim.rpcUrl,
    LOG_LEVEL: opts.logStream !== undefined ? 'info' : process.env.TEST_LOG_LEVEL ?? 'silent',
    COOKIE_SECURE: 'false',
    LOGIN_RATE_LIMIT: '0',
    ...opts.env
  })
  const fastify = Fastify({ ...loggerOptions(config, opts.logStream), ...serverOptions(config) })
  await fastify.register(app, { config })
  t.teardown(() => fastify.close())
  let url = ''
  if (opts.listen === true) {
    await fastify.listen({ host: '127.0.0.1', port: 0 })
    const address = fastify.server.address()
    if (address === null || typeof address === 'string') throw new Error('no address')
    url = `http://127.0.0.1:${address.port}`
  } else {
    await fastify.ready()
  }
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
