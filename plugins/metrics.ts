import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { EndReason } from '../lib/sessions.js'
import { CALL_OUTCOMES, type CallOutcome } from '../lib/errors.js'
import { OPERATOR_ACTIONS, type OperatorAction } from '../lib/admin.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** This app's Prometheus registry (process metrics are merged in at scrape time). */
    metrics: Registry
  }
}

const PREFIX = 'legacy_gateway_'

// Every label value is listed up front, so each series exists (at 0) from the first scrape and
// the label sets stay bounded: never a user name, session id, method name or address. The call
// outcomes are the error table's (lib/errors.ts).
const END_REASONS: readonly EndReason[] = ['lost', 'timeout', 'expired', 'logout', 'replaced', 'shutdown', 'revoked']
const DROP_REASONS = ['spoofed', 'oversized', 'slow_client'] as const
type DropReason = typeof DROP_REASONS[number]

// Legacy calls range from a few ms to LEGACY_TIMEOUT_MS (30 s by default).
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

// Process metrics (CPU, memory, event loop, GC) describe the process, not an app instance, and
// collecting them starts a GC observer and an event-loop histogram that cannot be stopped: they
// live in one registry per process (never prom-client's global one), merged into each scrape.
let processRegistry: Registry | undefined
function processMetrics (): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
  }
  return processRegistry
}

/**
 * The text of a scrape of `register` with the process metrics merged in: GET /metrics on the
 * browsers' port and on the operator API's (plugins/admin.ts) answer the same.
 */
export async function exposition (register: Registry): Promise<{ contentType: string, text: string }> {
  const merged = Registry.merge([processMetrics(), register])
  return { contentType: merged.contentType, text: await merged.metrics() }
}

/**
 * How far a number kept elsewhere (the alarm feed's or the hub's stats) moved since the last
 * scrape. Counters built on it only ever move up by that difference, so they never go down even
 * if the source is replaced or reset.
 */
function delta (read: () => number): () => number {
  let seen = 0
  return () => {
    const now = read()
    const moved = Math.max(now - seen, 0)
    seen = Math.max(seen, now)
    return moved
  }
}

async function metrics (fastify: FastifyInstance): Promise<void> {
  const register = new Registry()
  const registers = [register]
  const sessions = fastify.sessions
  const limit = fastify.hasDecorator('upstreamLimit') ? fastify.upstreamLimit : undefined
  // Read at scrape time; without ALARM_URL the feed's series stay at 0, the hub's still move.
  const feed = fastify.alarms
  const hub = fastify.alarmHub

  /** A gauge set from `read` at every scrape. */
  const gauge = (name: string, help: string, read: () => number): Gauge =>
    new Gauge({ name: PREFIX + name, help, registers, collect () { this.set(read()) } })
  /** A counter that follows a monotonic number kept elsewhere, read at every scrape. */
  const follower = (name: string, help: string, read: () => number): Counter => {
    const moved = delta(read)
    return new Counter({ name: PREFIX + name, help, registers, collect () { this.inc(moved()) } })
  }

  gauge('sessions_open', 'Sessions open now (each holds one pinned legacy connection).', () => sessions.size)
  // Beside sessions_open, so that an alert can say "near the limit" without a copy of the setting.
  gauge('max_sessions', 'MAX_SESSIONS: logins beyond it are answered 503 TOO_MANY_SESSIONS.', () => fastify.config.maxSessions)
  const opened = new Counter({
    name: `${PREFIX}sessions_opened_total`,
    help: 'Sessions opened (successful logins).',
    registers
  })
  const ended = new Counter({
    name: `${PREFIX}sessions_ended_total`,
    help: 'Sessions ended, by reason: logout, expired (idle), lost (socket closed), timeout (legacy did not answer), replaced (new login), shutdown, revoked (an operator).',
    labelNames: ['reason'],
    registers
  })
  const calls = new Counter({
    name: `${PREFIX}upstream_calls_total`,
    help: 'Legacy calls (RPC, XML proxy, login, logout, heartbeat), by outcome.',
    labelNames: ['outcome'],
    registers
  })
  const latency = new Histogram({
    name: `${PREFIX}upstream_call_duration_seconds`,
    help: 'Time from sending a legacy call (queueing on its socket included) to its answer or failure, by outcome.',
    labelNames: ['outcome'],
    buckets: LATENCY_BUCKETS,
    registers
  })
  for (const reason of END_REASONS) ended.inc({ reason }, 0)
  for (const outcome of CALL_OUTCOMES) {
    calls.inc({ outcome }, 0)
    latency.zero({ outcome })
  }
  gauge('upstream_queue_depth', 'Legacy calls waiting for or running on a pinned socket, over all sessions.', () => sessions.queueDepth())
  gauge('upstream_in_flight', 'Browser requests to /api/rpc/* and /api/xml/* in flight (bounded by UPSTREAM_MAX_CONCURRENT).', () => limit?.inFlight ?? 0)
  const policy = fastify.hasDecorator('policy') ? fastify.policy : undefined
  const refusalSources = { rpc: delta(() => policy?.refusals.rpc ?? 0), xml: delta(() => policy?.refusals.xml ?? 0) }
  register.registerMetric(new Counter({
    name: `${PREFIX}policy_refusals_total`,
    help: 'Browser calls answered 403 FORBIDDEN by the method policy (kind rpc: RPC_ALLOW, RPC_DENY, the reserved methods) or the path policy (kind xml: XML_ALLOW, XML_DENY, the XML-RPC endpoint); nothing of them reached the legacy server.',
    labelNames: ['kind'],
    registers: [],
    collect () {
      for (const kind of ['rpc', 'xml'] as const) this.inc({ kind }, refusalSources[kind]())
    }
  }))
  follower('upstream_rejected_total', 'Requests answered 503 UPSTREAM_UNAVAILABLE because UPSTREAM_MAX_CONCURRENT calls were in flight.', () => limit?.rejected ?? 0)

  // Store events: counted as they happen.
  const onOpen = (): void => { opened.inc() }
  const onEnd = (_session: unknown, reason: EndReason): void => { ended.inc({ reason }) }
  // One bound pair per outcome, made once: the hot path never builds a labels object per call.
  const byOutcome = new Map(CALL_OUTCOMES.map(outcome => [outcome, { calls: calls.labels(outcome), latency: latency.labels(outcome) }]))
  const onCall = (outcome: CallOutcome, seconds: number): void => {
    const bound = byOutcome.get(outcome)
    if (bound === undefined) {
      calls.inc({ outcome })
      latency.observe({ outcome }, seconds)
      return
    }
    bound.calls.inc()
    bound.latency.observe(seconds)
  }
  sessions.on('open', onOpen)
  sessions.on('end', onEnd)
  sessions.on('call', onCall)

  follower('alarms_received_total', 'Alarm datagrams accepted from the alarm server.', () => feed?.stats.received ?? 0)
  follower('alarms_forwarded_total', 'Alarm frames sent to WebSocket clients (one per alarm and client).', () => hub.stats.forwarded)
  const dropSources: Record<DropReason, () => number> = {
    spoofed: delta(() => feed?.stats.dropped.spoofed ?? 0),
    oversized: delta(() => feed?.stats.dropped.oversized ?? 0),
    slow_client: delta(() => hub.stats.cutOff)
  }
  register.registerMetric(new Counter({
    name: `${PREFIX}alarms_dropped_total`,
    help: 'Alarm datagrams dropped (spoofed: not from the alarm server; oversized: over ALARM_MAX_BYTES) and WebSocket clients cut off for not reading (slow_client).',
    labelNames: ['reason'],
    registers: [],
    collect () {
      for (const reason of DROP_REASONS) this.inc({ reason }, dropSources[reason]())
    }
  }))
  // The feed forwards a datagram that is neither XML nor JSON as text, so that no alarm is lost to
  // a parser; one whose bytes are invalid in its charset as its exact bytes (its text would not be
  // what was sent). Both are counted here (and in alarms_received_total).
  follower('alarms_malformed_total', 'Alarm datagrams that were neither well-formed XML nor JSON (forwarded as text) or had bytes invalid in their charset (forwarded as base64).', () => feed?.stats.malformed ?? 0)
  follower('alarm_subscribes_sent_total', 'Subscribe datagrams sent to the alarm server.', () => feed?.stats.subscribesSent ?? 0)
  follower('alarm_subscribe_errors_total', 'Subscribe datagrams that could not be sent.', () => feed?.stats.subscribeErrors ?? 0)
  // Silence is measured from the feed's start until the first datagram: a feed that never hears
  // anything goes stale too. 0 without ALARM_URL (alarm_feed_up is then -1).
  const feedStartedAt = Date.now()
  gauge('alarm_last_received_timestamp_seconds', 'Unix time of the last datagram accepted from the alarm server (the feed\'s start until the first one; 0 without ALARM_URL).',
    () => feed === null || feed === undefined ? 0 : (feed.lastDatagramAt ?? feedStartedAt) / 1000)
  gauge('alarm_last_seq', 'Sequence number of the last alarm received by this process (restarts at 0 with the process); with ALARM_BUS_URL, the last seq read from the shared stream.', () => (fastify.alarmBus ?? feed)?.lastSeq ?? 0)
  gauge('alarm_feed_up', '1 when the alarm socket is bound and subscribes go out, 0 when not, -1 without ALARM_URL.',
    () => feed === null || feed === undefined ? -1 : feed.health().ok ? 1 : 0)
  gauge('websocket_clients', 'Alarm WebSockets open now.', () => hub.clients)
  // Cluster mode (ALARM_BUS_URL); without a bus these stay at 0 and the gauge at -1.
  const bus = fastify.alarmBus
  follower('alarm_bus_appends_total', 'Alarm datagrams this instance appended to the shared stream.', () => bus?.stats.appended ?? 0)
  follower('alarm_bus_dedup_total', 'Alarm datagrams not appended: the same bytes were already appended within ALARM_DEDUP_MS (by any instance).', () => bus?.stats.deduplicated ?? 0)
  follower('alarm_bus_lost_total', 'Alarm datagrams that could not be stored (Redis unreachable and the queue full); the stream holds a gap in their place.', () => bus?.stats.lost ?? 0)
  follower('alarm_bus_errors_total', 'Failed Redis commands and connection errors of the alarm bus.', () => bus?.stats.errors ?? 0)
  follower('alarm_bus_restarts_total', 'Times the shared stream had a new identity (lost or flushed): alarm clients were restarted.', () => bus?.stats.restarts ?? 0)
  gauge('alarm_bus_pending', 'Alarm datagrams waiting to be appended to the shared stream.', () => bus?.pending ?? 0)
  gauge('alarm_bus_connected', '1 when the alarm bus reads (and, when ingesting, appends to) the shared stream, 0 when not, -1 without ALARM_BUS_URL.',
    () => bus === null || bus === undefined ? -1 : bus.connected ? 1 : 0)

  // The operator API (plugins/admin.ts), when registered before: its drain switch and actions.
  const operator = fastify.hasDecorator('operator') ? fastify.operator : undefined
  gauge('draining', '1 while an operator drains this instance (new logins 503 DRAINING, /readyz 503), else 0.', () => operator?.draining === true ? 1 : 0)
  const actions = new Counter({
    name: `${PREFIX}operator_actions_total`,
    help: 'Operator API actions, by action: list_sessions, end_session, end_user, drain, undrain.',
    labelNames: ['action'],
    registers
  })
  for (const action of OPERATOR_ACTIONS) actions.inc({ action }, 0)
  const refused = new Counter({
    name: `${PREFIX}operator_refused_total`,
    help: 'Requests to the operator API refused 401 for a missing or wrong bearer token.',
    registers
  })
  const onAction = (action: OperatorAction): void => { actions.inc({ action }) }
  const onRefused = (): void => { refused.inc() }
  operator?.on('action', onAction)
  operator?.on('refused', onRefused)

  processMetrics()
  fastify.decorate('metrics', register)

  fastify.get('/metrics', { logLevel: 'warn' }, async (_request, reply) => {
    const { contentType, text } = await exposition(register)
    return reply.type(contentType).send(text)
  })

  fastify.addHook('onClose', async () => {
    sessions.off('open', onOpen)
    sessions.off('end', onEnd)
    sessions.off('call', onCall)
    operator?.off('action', onAction)
    operator?.off('refused', onRefused)
    register.clear()
  })
}

export default fp(metrics, { name: 'metrics', fastify: '5.x', dependencies: ['sessions', 'alarms'] })
