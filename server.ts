import Fastify from 'fastify'
import closeWithGrace from 'close-with-grace'
import app, { serverOptions } from './app.js'
import { ConfigError, loadConfig, type Config } from './lib/config.js'
import { loggerOptions } from './lib/logger.js'
import type { Simulator } from './sim/legacy.js'

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
    // JSON to stdout with request ids; cookies, passwords and session ids redacted (lib/logger.ts).
    ...loggerOptions(config),
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

  closeWithGrace({
    delay: config.shutdownTimeoutMs + 5000,
    // Its own messages ("second SIGTERM, exiting", "killed by timeout") go to the JSON log too.
    logger: { error: (message: unknown) => { fastify.log.error(message instanceof Error ? { err: message } : {}, message instanceof Error ? 'shutdown failed' : String(message)) } }
  }, async ({ signal, err }) => {
    if (err) fastify.log.error({ err }, 'closing after an error')
    else fastify.log.info({ signal }, 'shutting down')
    await fastify.close()
    await simulator?.close()
    fastify.log.info('shut down')
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
