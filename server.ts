import Fastify from 'fastify'
import closeWithGrace from 'close-with-grace'
import app, { serverOptions } from './app.js'
import { ConfigError, loadConfig, type Config } from './lib/config.js'
import type { Simulator } from './sim/legacy.js'

// Cookies, passwords and session ids never reach the log.
export const REDACT = [
  'req.headers.cookie',
  'req.headers.authorization',
  'res.headers["set-cookie"]',
  'password',
  '*.password',
  'sessionId',
  '*.sessionId'
]

async function main (): Promise<void> {
  let config: Config
  try {
    config = loadConfig(process.env)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`legacy-gateway: ${err.message}\n`)
      process.exit(1)
    }
    throw err
  }

  const fastify = Fastify({
    logger: { level: config.logLevel, redact: { paths: REDACT, censor: '[redacted]' } },
    ...serverOptions(config)
  })
  // Slowloris: a client has 10 s to send its headers.
  fastify.server.headersTimeout = 10_000

  let simulator: Simulator | undefined
  if (config.demo) {
    // Demo mode: the built-in simulator plays the legacy system on loopback.
    const { createSimulator } = await import('./sim/legacy.js')
    simulator = await createSimulator({ host: '127.0.0.1', alarmIntervalMs: 5000 })
    const alarm = new URL(simulator.alarmUrl)
    config = {
      ...config,
      legacyUrl: new URL(simulator.rpcUrl),
      alarmUrl: config.alarmUrl ?? { host: alarm.hostname, port: Number(alarm.port) }
    }
    fastify.log.warn({ legacyUrl: simulator.rpcUrl, alarmUrl: simulator.alarmUrl, controlUrl: simulator.controlUrl },
      'DEMO MODE: LEGACY_URL is not set, so the built-in legacy simulator is running on loopback')
  }

  await fastify.register(app, { config })

  closeWithGrace({ delay: config.shutdownTimeoutMs + 5000 }, async ({ signal, err }) => {
    if (err) fastify.log.error({ err }, 'closing after an error')
    else fastify.log.info({ signal }, 'shutting down')
    await fastify.close()
    await simulator?.close()
  })

  await fastify.listen({ host: config.host, port: config.port })
  if (config.demo) {
    const address = fastify.server.address()
    const base = typeof address === 'object' && address !== null ? `http://${config.host}:${address.port}` : ''
    fastify.log.info(`try it: curl -c /tmp/lg.txt -H 'content-type: application/json' -d '{"username":"demo","password":"demo"}' ${base}/api/login`)
  }
}

main().catch((err) => {
  process.stderr.write(`legacy-gateway: failed to start: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
