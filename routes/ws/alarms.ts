import type { FastifyInstance, FastifyRequest } from 'fastify'
import websocket from '@fastify/websocket'
import { Type } from 'typebox'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Forbidden } from '../../lib/errors.js'

/**
 * GET /ws/alarms[?since=SEQ] (CONTRACT §4): checks the Origin and the session before the upgrade,
 * then hands the WebSocket to the alarm hub (lib/alarm-hub.ts), which does everything after.
 */

const SinceQuery = Type.Object({
  since: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$' }))
})

// Clients send nothing but pongs (and perhaps a keep-alive text); ws accepts 100 MiB by default.
const MAX_PAYLOAD = 4096

export default async function alarmWsRoutes (fastify: FastifyInstance): Promise<void> {
  const config = fastify.config
  const hub = fastify.alarmHub

  await fastify.register(websocket, {
    options: { maxPayload: MAX_PAYLOAD },
    // The hub has closed every client by now (plugins/alarms.ts); this waits for their sockets.
    preClose: async function () {
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

  fastify.withTypeProvider<TypeBoxTypeProvider>().get('/ws/alarms', {
    websocket: true,
    onRequest: [checkOrigin, fastify.requireSession],
    schema: { querystring: SinceQuery }
  }, (socket, request) => {
    const session = request.getSession()
    socket.on('error', (err) => { request.log.info({ err: err.message }, 'alarm WebSocket error') })
    const since = request.query.since
    // request.raw.socket is the upgraded TCP socket ws writes to: the hub corks it per batch.
    const joined = hub.add({ socket, wire: request.raw.socket, session, since: since === undefined ? undefined : Number(since) })
    if (joined) request.log.info({ since: since ?? null, clients: hub.clients }, 'alarm WebSocket open')
  })
}
