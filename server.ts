/**
 * The process entry (`npm start`): read the configuration, make the logger, listen, and close
 * with grace on SIGTERM/SIGINT. The gateway itself is app.ts; demo mode is lib/demo.ts.
 */
import Fastify from 'fastify'
import closeWithGrace from 'close-with-grace'
import app, { serverOptions } from './app.js'
import { ConfigError, loadConfig, type Config } from './lib/config.js'
import { resolveConfig, tryDemo } from './lib/demo.js'
import { loggerOptions } from './lib/logger.js'

/** The environment's configuration; a bad value is one line on stderr and exit 1. */
function configFromEnv (): Config {
  try {
    return loadConfig(process.env)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`legacy-gateway: ${err.message}\n`)
    process.exit(1)
  }
}

async function main (): Promise<void> {
  const env = configFromEnv()
  // JSON to stdout with request ids; cookies, passwords and session ids redacted (lib/logger.ts).
  const fastify = Fastify({ ...loggerOptions(env), ...serverOptions(env) })
  const { config, simulator } = await resolveConfig(env, fastify.log)
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

  const address = await fastify.listen({ host: config.host, port: config.port })
  if (simulator !== undefined) fastify.log.info(tryDemo(address))
}

main().catch((err: unknown) => {
  process.stderr.write(`legacy-gateway: failed to start: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
