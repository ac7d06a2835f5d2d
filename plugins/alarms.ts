import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { AlarmFeed, type AlarmEntry, type AlarmFeedOptions } from '../lib/alarm-feed.js'
import { AlarmBus } from '../lib/alarm-bus.js'
import { AlarmHub } from '../lib/alarm-hub.js'
import type { EndReason, Session } from '../lib/sessions.js'
import type { AlarmEndpoint } from '../lib/config.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The UDP alarm feed; null when ALARM_URL is not set (or, with a bus, ALARM_INGEST is false). */
    alarms: AlarmFeed | null
    /** Cluster mode: the shared Redis stream (ALARM_BUS_URL); null in-process. */
    alarmBus: AlarmBus | null
    /** The fan-out to the alarm WebSockets (routes/ws/alarms.ts adds clients to it). */
    alarmHub: AlarmHub<Session>
    /**
     * Names the seq space in `hello`: a client seeing a new one knows seq started again. Without a
     * bus, this process's (the app's, not the feed's: the WebSocket greets with it with or without
     * a feed); with one, the shared stream's (undefined until it has been read, then the same on
     * every instance).
     */
    instanceId: string
  }
}

/**
 * The alarm service: the UDP feed (with ALARM_URL) feeding the WebSocket hub, directly, or in
 * cluster mode through the shared stream that every instance reads (lib/alarm-bus.ts).
 */
async function alarms (fastify: FastifyInstance): Promise<void> {
  const config = fastify.config
  const store = fastify.sessions
  const log = fastify.log.child({ component: 'alarms' })
  // The feed's and the bus's logger (lib/ takes a plain one, not pino's).
  const logger = {
    info: (obj: object, msg: string) => log.info(obj, msg),
    warn: (obj: object, msg: string) => log.warn(obj, msg),
    debug: (obj: object, msg: string) => log.debug(obj, msg)
  }
  const bus = config.alarmBusUrl === undefined
    ? null
    : new AlarmBus({
      url: config.alarmBusUrl,
      stream: config.alarmStream,
      bufferSize: config.alarmBuffer,
      dedupMs: config.alarmDedupMs,
      ingest: config.alarmIngest,
      logger
    })
  const ingest = bus === null || config.alarmIngest
  const feed = config.alarmUrl === undefined || !ingest ? null : await startFeed(fastify, config.alarmUrl, bus, logger)
  const ownId = randomUUID()
  const hub = new AlarmHub<Session>({
    instance: ownId,
    replay: bus ?? feed,
    sessions: store,
    maxBufferedBytes: config.wsMaxBufferedBytes,
    pingMs: config.wsPingMs
  })
  fastify.decorate('alarms', feed)
  fastify.decorate('alarmBus', bus)
  fastify.decorate('alarmHub', hub)
  fastify.decorate('instanceId', { getter: () => hub.instance })

  const onAlarm = (entry: AlarmEntry): void => { hub.publish(entry) }
  const onRestart = (): void => { hub.restart() }
  const onEnd = (session: Session, reason: EndReason): void => { hub.endSession(session, reason) }
  // With a bus, what the feed takes goes to the stream, and what every instance fans out comes back from it.
  const source = bus ?? feed
  source?.on('alarm', onAlarm)
  bus?.on('restart', onRestart)
  store.on('end', onEnd)
  if (bus !== null) {
    bus.start()
    log.info({ stream: config.alarmStream, ingest: config.alarmIngest }, 'cluster mode: alarms go through the shared stream')
  }
  // Shutdown: the sessions' drain (registered before) has given most clients their notice; the
  // rest get 1001 here.
  fastify.addHook('preClose', async () => { hub.close() })
  fastify.addHook('onClose', async () => {
    store.off('end', onEnd)
    source?.off('alarm', onAlarm)
    bus?.off('restart', onRestart)
    // Unsubscribe at shutdown, after the WebSockets are closed.
    await feed?.close()
    await bus?.close()
  })
}

async function startFeed (fastify: FastifyInstance, server: AlarmEndpoint, bus: AlarmBus | null, logger: NonNullable<AlarmFeedOptions['logger']>): Promise<AlarmFeed> {
  const config = fastify.config
  const feed = new AlarmFeed({
    host: server.host,
    port: server.port,
    subscribe: config.alarmSubscribe,
    unsubscribe: config.alarmUnsubscribe,
    resubscribeMs: config.alarmResubscribeMs,
    bufferSize: config.alarmBuffer,
    charset: config.legacyCharset,
    maxBytes: config.alarmMaxBytes,
    logger,
    ...(bus === null ? {} : { sink: (datagram) => bus.append(datagram) })
  })
  await feed.start()
  logger.info({ alarmServer: `${server.host}:${server.port}` }, 'subscribed to the alarm server')
  return feed
}

export default fp(alarms, { name: 'alarms', fastify: '5.x', dependencies: ['config', 'sessions'] })
