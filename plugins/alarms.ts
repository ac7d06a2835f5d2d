import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { AlarmFeed, type AlarmEntry } from '../lib/alarm-feed.js'
import { AlarmHub } from '../lib/alarm-hub.js'
import type { EndReason, Session } from '../lib/sessions.js'
import type { AlarmEndpoint } from '../lib/config.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The UDP alarm feed; null when ALARM_URL is not set. */
    alarms: AlarmFeed | null
    /** The fan-out to the alarm WebSockets (routes/ws/alarms.ts adds clients to it). */
    alarmHub: AlarmHub<Session>
    /**
     * Names this process's seq space in `hello`: a client seeing a new one knows seq started
     * again. The app's, not the feed's: the WebSocket greets with it with or without a feed.
     */
    instanceId: string
  }
}

/** The alarm service: the UDP feed (with ALARM_URL) feeding the WebSocket hub. */
async function alarms (fastify: FastifyInstance): Promise<void> {
  const config = fastify.config
  const store = fastify.sessions
  const feed = config.alarmUrl === undefined ? null : await startFeed(fastify, config.alarmUrl)
  const instanceId = randomUUID()
  const hub = new AlarmHub<Session>({
    instance: instanceId,
    replay: feed,
    sessions: store,
    maxBufferedBytes: config.wsMaxBufferedBytes,
    pingMs: config.wsPingMs
  })
  fastify.decorate('alarms', feed)
  fastify.decorate('alarmHub', hub)
  fastify.decorate('instanceId', instanceId)

  const onAlarm = (entry: AlarmEntry): void => { hub.publish(entry) }
  const onEnd = (session: Session, reason: EndReason): void => { hub.endSession(session, reason) }
  feed?.on('alarm', onAlarm)
  store.on('end', onEnd)
  // Shutdown: the sessions' drain (registered before) has given most clients their notice; the
  // rest get 1001 here.
  fastify.addHook('preClose', async () => { hub.close() })
  fastify.addHook('onClose', async () => {
    store.off('end', onEnd)
    if (feed === null) return
    feed.off('alarm', onAlarm)
    // Unsubscribe at shutdown, after the WebSockets are closed.
    await feed.close()
  })
}

async function startFeed (fastify: FastifyInstance, server: AlarmEndpoint): Promise<AlarmFeed> {
  const config = fastify.config
  const log = fastify.log.child({ component: 'alarms' })
  const feed = new AlarmFeed({
    host: server.host,
    port: server.port,
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
  await feed.start()
  log.info({ alarmServer: `${server.host}:${server.port}` }, 'subscribed to the alarm server')
  return feed
}

export default fp(alarms, { name: 'alarms', fastify: '5.x', dependencies: ['config', 'sessions'] })
