import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { AlarmFeed } from '../lib/alarm-feed.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The UDP alarm feed; null when ALARM_URL is not set. */
    alarms: AlarmFeed | null
  }
}

async function alarms (fastify: FastifyInstance): Promise<void> {
  const config = fastify.config
  if (config.alarmUrl === undefined) {
    fastify.decorate('alarms', null)
    return
  }
  const log = fastify.log.child({ component: 'alarms' })
  const feed = new AlarmFeed({
    host: config.alarmUrl.host,
    port: config.alarmUrl.port,
    subscribe: config.alarmSubscribe,
    unsubscribe: config.alarmUnsubscribe,
    resubscribeMs: config.alarmResubscribeMs,
    bufferSize: config.alarmBuffer,
    charset: config.legacyCharset,
    maxBytes: config.alarmMaxBytes,
    logger: {
      info: (obj, msg) => log.info(obj, msg),
      warn: (obj, msg) => log.warn(obj, msg),
      debug: (obj, msg) => log.debug(obj, msg)
    }
  })
  fastify.decorate('alarms', feed)
  await feed.start()
  log.info({ alarmServer: `${config.alarmUrl.host}:${config.alarmUrl.port}` }, 'subscribed to the alarm server')
  // Unsubscribe at shutdown, after the WebSockets are closed.
  fastify.addHook('onClose', async () => { await feed.close() })
}

export default fp(alarms, { name: 'alarms', fastify: '5.x', dependencies: ['config'] })
