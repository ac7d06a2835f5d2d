import net from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'

const Checks = Type.Object({
  legacy: Type.String(),
  alarms: Type.String(),
  draining: Type.String()
})
const ReadyReply = Type.Object({
  status: Type.Literal('ready'),
  checks: Checks
})

// onReady waits this long for the first probe; a legacy host that drops SYNs would otherwise
// hold the whole startup for LEGACY_CONNECT_TIMEOUT_MS. Until the probe settles the check reads
// "pending" (not ready).
const FIRST_PROBE_WAIT_MS = 1000

/** Resolves to undefined when the TCP handshake succeeds, else to a short reason. */
function probe (host: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port })
    const done = (reason: string | undefined): void => {
      socket.destroy()
      resolve(reason)
    }
    socket.setTimeout(timeoutMs, () => done(`no answer within ${timeoutMs} ms`))
    socket.once('connect', () => done(undefined))
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message))
  })
}

/**
 * GET /readyz: may a load balancer send this instance traffic? The legacy check is a TCP connect
 * to the legacy origin, made by a timer every READY_PROBE_MS and cached, so that probes from
 * load balancers (or a flood of requests) never turn into connections to the legacy server.
 * Checks read "ok" when passing; otherwise a short reason, and the check is named in `failing`.
 */
export default async function readyRoutes (fastify: FastifyInstance): Promise<void> {
  const routes = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const config = fastify.config
  const legacy = config.legacyUrl
  const host = legacy.hostname.replace(/^\[|\]$/g, '')
  const port = Number(legacy.port) || (legacy.protocol === 'https:' ? 443 : 80)

  let legacyState = 'pending'
  let probing: Promise<void> | undefined
  let timer: NodeJS.Timeout | undefined

  const runProbe = (): Promise<void> => {
    // A probe slower than the period is not stacked with another one.
    probing ??= probe(host, port, config.legacyConnectTimeoutMs).then((failure) => {
      const next = failure === undefined ? 'ok' : `unreachable (${failure})`
      if (next !== legacyState) {
        if (next === 'ok') fastify.log.info({ check: 'legacy' }, 'readiness: the legacy server accepts connections')
        else fastify.log.warn({ check: 'legacy', reason: failure }, 'readiness: the legacy server does not accept connections')
      }
      legacyState = next
    }).finally(() => { probing = undefined })
    return probing
  }

  fastify.addHook('onReady', async () => {
    timer = setInterval(() => { runProbe().catch(() => {}) }, config.readyProbeMs).unref()
    await Promise.race([runProbe(), delay(FIRST_PROBE_WAIT_MS, undefined, { ref: false })])
  })
  fastify.addHook('onClose', async () => {
    clearInterval(timer)
  })

  routes.get('/readyz', {
    logLevel: 'warn',
    // A 503 is either { status: 'not ready', checks, failing } or the error body of SHUTTING_DOWN
    // (plugins/lifecycle.ts), which a schema of the first would strip: it is written as it is.
    schema: { response: { 200: ReadyReply, 503: Type.Unknown() } }
  }, async (_request, reply) => {
    let alarms = 'disabled'
    const feed = fastify.alarms
    if (config.alarmUrl !== undefined && feed !== null && feed !== undefined) {
      const health = feed.health()
      alarms = health.ok ? 'ok' : health.reason
    }
    // Cluster mode: the alarms reach browsers only through the shared stream, ingesting or not.
    const bus = fastify.alarmBus
    if (bus !== null && bus !== undefined) {
      const health = bus.health()
      if (!health.ok) alarms = health.reason
      else if (alarms === 'disabled') alarms = 'ok'
    }
    // An operator's drain (POST /admin/drain) takes the instance out of rotation on purpose.
    const draining = fastify.operator.draining ? 'drained by an operator' : 'ok'
    const checks = { legacy: legacyState, alarms, draining }
    const failing = Object.entries(checks).filter(([, state]) => state !== 'ok' && state !== 'disabled').map(([name]) => name)
    // plugins/lifecycle.ts already answers 503 SHUTTING_DOWN while draining (to every route
    // without config.duringShutdown); this keeps /readyz right on its own.
    if (fastify.shuttingDown) failing.push('shutdown')
    reply.header('cache-control', 'no-store')
    if (failing.length === 0) return { status: 'ready', checks }
    return reply.code(503).send({ status: 'not ready', checks, failing })
  })
}
