import type { FastifyInstance, FastifyRequest } from 'fastify'
import websocket from '@fastify/websocket'
import type { WebSocket } from 'ws'
import { Type } from 'typebox'
import { randomUUID } from 'node:crypto'
import type { Session } from '../../lib/sessions.js'
import { noticeFor } from '../../lib/sessions.js'
import { Forbidden } from '../../lib/errors.js'
import type { AlarmEntry } from '../../lib/alarm-feed.js'

interface Client {
  readonly socket: WebSocket
  readonly session: Session
  alive: boolean
  /** The last seq this client has been sent or deliberately not sent (before it joined). */
  after: number
  /**
   * Bytes of its ?since= replay: a reading client may be that far above WS_MAX_BUFFERED_BYTES
   * until it has caught up (the replayed frames are the ring buffer's own, so this costs nothing).
   */
  slack: number
}

// Alarms are fanned out in small batches: one write (corked) per client per batch instead of one
// per client per alarm. The socket writes dominate the fan-out (bench/alarms.ts, strace: one
// writev per client per alarm); a 10 ms window costs at most 10 ms of latency.
const FLUSH_MS = 10
const FLUSH_AT = 64
// A batch stays well under WS_MAX_BUFFERED_BYTES, so one batch can never look like a slow client.
const FLUSH_BYTES = 64 * 1024

const SinceQuery = Type.Object({
  since: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$' }))
})

// Clients send nothing but pongs (and perhaps a keep-alive text); ws accepts 100 MiB by default.
const MAX_PAYLOAD = 4096

export default async function alarmWsRoutes (fastify: FastifyInstance): Promise<void> {
  const config = fastify.config
  const feed = fastify.alarms
  // Without a feed the WebSocket still carries hello and session notices.
  const instance = feed?.instance ?? randomUUID()
  const clients = new Set<Client>()
  const bySession = new Map<Session, Set<Client>>()

  await fastify.register(websocket, {
    options: { maxPayload: MAX_PAYLOAD },
    // Shutdown: every client gets 1001 (going away). Sessions were already logged out by then,
    // so most sockets are closed already (with their session notice).
    preClose: async function () {
      for (const client of clients) client.socket.close(1001, 'gateway shutting down')
      await new Promise<void>((resolve) => { fastify.websocketServer.close(() => resolve()) })
    }
  })

  // Browsers send cookies on cross-site WebSocket handshakes and CORS does not apply to them, so
  // the Origin is checked before the upgrade (a GET: plugins/origins.ts does not judge it). No
  // Origin header means not a browser: allowed (it still needs the session cookie). ALLOWED_ORIGINS,
  // when set, replaces the same-origin rule here.
  async function checkOrigin (request: FastifyRequest): Promise<void> {
    const origin = request.headers.origin
    if (origin === undefined) return
    if (config.allowedOrigins !== undefined ? fastify.origins.listed(origin) : origin === fastify.origins.own(request)) return
    throw new Forbidden(`Origin ${origin} may not open the alarm WebSocket`)
  }

  const send = (client: Client, data: Buffer | string): void => {
    client.socket.send(data, { binary: false })
  }

  const remove = (client: Client): void => {
    if (!clients.delete(client)) return
    const set = bySession.get(client.session)
    set?.delete(client)
    if (set !== undefined && set.size === 0) bySession.delete(client.session)
    client.session.websockets--
    fastify.sessions.touch(client.session)
    if (feed) feed.clients = clients.size
  }

  const cutOff = (client: Client): void => {
    // The close frame waits behind the data the client is not reading; terminate soon after.
    if (feed) feed.stats.dropped.slowClient++
    remove(client)
    client.socket.close(1013, 'too slow: send buffer limit reached')
    setTimeout(() => client.socket.terminate(), 1000).unref()
  }

  let pending: AlarmEntry[] = []
  let pendingBytes = 0
  let flushTimer: NodeJS.Timeout | undefined

  const flush = (): void => {
    if (flushTimer !== undefined) clearTimeout(flushTimer)
    flushTimer = undefined
    const batch = pending
    pending = []
    pendingBytes = 0
    const last = batch.at(-1)
    if (last === undefined || feed === null) return
    let sent = 0
    for (const client of clients) {
      if (client.after >= last.seq) continue
      // Judged before the batch: while corked, even a fast reader's bufferedAmount holds the batch.
      const buffered = client.socket.bufferedAmount
      if (buffered > config.wsMaxBufferedBytes + client.slack) {
        cutOff(client)
        continue
      }
      if (buffered <= config.wsMaxBufferedBytes) client.slack = 0
      // ws corks each frame's header and payload; corking the batch makes it one write.
      const raw = (client.socket as unknown as { _socket?: { cork?: () => void, uncork?: () => void } })._socket
      raw?.cork?.()
      for (const entry of batch) {
        if (entry.seq <= client.after) continue
        send(client, entry.frame)
        client.after = entry.seq
        sent++
      }
      raw?.uncork?.()
    }
    feed.stats.forwarded += sent
  }

  if (feed) {
    feed.on('alarm', (entry: AlarmEntry) => {
      pending.push(entry)
      pendingBytes += entry.frame.length
      if (pending.length >= FLUSH_AT || pendingBytes >= FLUSH_BYTES) flush()
      else flushTimer ??= setTimeout(flush, FLUSH_MS)
    })
  }

  fastify.sessions.on('end', (session, reason) => {
    const set = bySession.get(session)
    if (set === undefined) return
    // Alarms published before the session ended still go out before its notice.
    flush()
    const state = noticeFor(reason)
    const frame = JSON.stringify({ type: 'session', state })
    for (const client of [...set]) {
      send(client, frame)
      remove(client)
      client.socket.close(reason === 'shutdown' ? 1001 : 1000, `session ${state}`)
    }
  })

  const pinger = setInterval(() => {
    for (const client of clients) {
      if (!client.alive) {
        remove(client)
        client.socket.terminate()
        continue
      }
      client.alive = false
      client.socket.ping()
    }
  }, config.wsPingMs).unref()
  fastify.addHook('onClose', async () => {
    clearInterval(pinger)
    if (flushTimer !== undefined) clearTimeout(flushTimer)
  })

  fastify.get<{ Querystring: { since?: string } }>('/ws/alarms', {
    websocket: true,
    onRequest: [checkOrigin, fastify.requireSession],
    schema: { querystring: SinceQuery }
  }, (socket, request) => {
    const session = request.session as Session
    // Whatever the feed holds now is either replayed below (?since=) or before this client's time.
    const client: Client = { socket, session, alive: true, after: feed?.lastSeq ?? 0, slack: 0 }
    session.websockets++
    fastify.sessions.touch(session)
    socket.on('pong', () => { client.alive = true })
    socket.on('close', () => remove(client))
    socket.on('error', (err) => { request.log.info({ err: err.message }, 'alarm WebSocket error') })

    send(client, JSON.stringify({ type: 'hello', instance, lastSeq: feed?.lastSeq ?? 0 }))
    const since = request.query.since
    if (since !== undefined && feed !== null) {
      // Replay and joining the live set happen in the same tick: no alarm can fall in between.
      const { gap, entries } = feed.since(Number(since))
      if (gap !== undefined) send(client, JSON.stringify({ type: 'gap', from: gap.from, to: gap.to }))
      for (const entry of entries) {
        send(client, entry.frame)
        client.slack += entry.frame.length
      }
    }
    if (session.ended !== undefined) {
      // The session ended between the upgrade check and now.
      send(client, JSON.stringify({ type: 'session', state: noticeFor(session.ended) }))
      socket.close(1000, 'session ended')
      session.websockets--
      return
    }
    clients.add(client)
    let set = bySession.get(session)
    if (set === undefined) {
      set = new Set()
      bySession.set(session, set)
    }
    set.add(client)
    if (feed) feed.clients = clients.size
    request.log.info({ since: since ?? null, clients: clients.size }, 'alarm WebSocket open')
  })
}
