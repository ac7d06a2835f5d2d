/**
 * The configuration: environment variables read once at start, validated, typed (CONTRACT §2).
 * A bad value is a ConfigError naming the variable, which server.ts prints as one line.
 */
import envSchema from 'env-schema'
import { Type, type Static } from 'typebox'
import type { FastifyServerOptions } from 'fastify'
import { normalizeCharset } from './charset.js'
import { CallTemplateError, parseCallTemplate, type CallTemplate, type Placeholder } from './call-template.js'
import { PolicyError, methodPolicy, pathPolicy, type Policy } from './policy.js'
import { encodeCall } from './xmlrpc.js'

// Integers are coerced by env-schema's Ajv.
const Int = (def: number, min = 0, max = 2 ** 31 - 1) => Type.Integer({ default: def, minimum: min, maximum: max })

/**
 * The one table of configuration variables: every variable of CONTRACT §2, plus a few operational
 * knobs of our own, with their defaults. `.env.example` and the configuration tables of README.md
 * and docs/OPERATIONS.md are checked against it (test/lib/config.test.ts).
 */
export const EnvSchema = Type.Object({
  HOST: Type.String({ default: '127.0.0.1', minLength: 1 }),
  PORT: Int(3000, 0, 65535),
  LEGACY_URL: Type.Optional(Type.String({ pattern: '^https?://[^\\s/?#]+', description: 'http(s) URL' })),
  LEGACY_CHARSET: Type.String({ default: 'utf-8', minLength: 1 }),
  LEGACY_TIMEOUT_MS: Int(30000, 1),
  LEGACY_LOGIN_METHOD: Type.String({ default: 'login', pattern: '^[A-Za-z0-9_.:/-]{1,128}$' }),
  LEGACY_LOGOUT_METHOD: Type.String({ default: 'logout', pattern: '^[A-Za-z0-9_.:/-]{1,128}$' }),
  LEGACY_HEARTBEAT_METHOD: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.:/-]{1,128}$' })),
  LEGACY_HEARTBEAT_MS: Int(0),
  LEGACY_CONNECT_TIMEOUT_MS: Int(5000, 1),
  SESSION_IDLE_MS: Int(1800000, 1),
  MAX_SESSIONS: Int(10000, 1),
  SESSION_QUEUE_MAX: Int(256, 0),
  LOGIN_RATE_LIMIT: Int(20),
  ALARM_URL: Type.Optional(Type.String({ pattern: '^udp://[^\\s/?#]+:[0-9]{1,5}/?$', description: 'udp://host:port' })),
  ALARM_SUBSCRIBE: Type.String({ default: 'SUBSCRIBE', minLength: 1 }),
  ALARM_UNSUBSCRIBE: Type.String({ default: 'UNSUBSCRIBE', minLength: 1 }),
  ALARM_RESUBSCRIBE_MS: Int(30000, 10),
  ALARM_BUFFER: Int(1000, 1, 10_000_000),
  ALLOWED_ORIGINS: Type.Optional(Type.String()),
  TRUST_PROXY: Type.Optional(Type.String()),
  COOKIE_SECURE: Type.Optional(Type.Boolean()),
  LOG_LEVEL: Type.Union([
    Type.Literal('fatal'), Type.Literal('error'), Type.Literal('warn'),
    Type.Literal('info'), Type.Literal('debug'), Type.Literal('trace'), Type.Literal('silent')
  ], { default: 'info' }),
  BODY_LIMIT: Int(1048576, 1024),
  UPSTREAM_MAX_RESPONSE_BYTES: Int(16777216, 1024),
  SHUTDOWN_TIMEOUT_MS: Int(10000, 0),
  INSTANCE_NAME: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' })),
  UPSTREAM_MAX_CONCURRENT: Int(1024, 1),
  ALARM_MAX_BYTES: Int(16384, 64, 65507),
  WS_PING_MS: Int(30000, 10),
  WS_MAX_BUFFERED_BYTES: Int(1048576, 1024),
  CONSOLE_ENABLED: Type.Optional(Type.Boolean()),
  READY_PROBE_MS: Int(5000, 10),
  LEGACY_FORWARD_HEADERS: Type.Optional(Type.String()),
  LEGACY_EXPOSE_HEADERS: Type.Optional(Type.String()),
  LEGACY_LOGIN_PARAMS: Type.String({ default: '["{{username}}","{{password}}"]' }),
  LEGACY_LOGOUT_PARAMS: Type.String({ default: '[]' }),
  LEGACY_HEARTBEAT_PARAMS: Type.String({ default: '[]' }),
  RPC_ALLOW: Type.String({ default: '*' }),
  RPC_DENY: Type.Optional(Type.String()),
  XML_ALLOW: Type.String({ default: '/*' }),
  XML_DENY: Type.Optional(Type.String()),
  AUDIT_LOG: Type.Boolean({ default: false }),
  RPC_BATCH_MAX: Int(64, 1, 1000),
  LEGACY_MULTICALL: Type.Union([Type.Literal('auto'), Type.Literal('true'), Type.Literal('false')], { default: 'auto' }),
  ADMIN_HOST: Type.String({ default: '127.0.0.1', minLength: 1 }),
  ADMIN_PORT: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
  // Checked by hand below: a schema error would print the value, and this one is a secret.
  ADMIN_TOKEN: Type.Optional(Type.String()),
  ALARM_BUS_URL: Type.Optional(Type.String({ pattern: '^rediss?://[^\\s]+$', description: 'redis://host:port[/db]' })),
  ALARM_STREAM: Type.String({ default: 'legacy-gateway:alarms', pattern: '^[^\\s]{1,200}$' }),
  ALARM_INGEST: Type.Boolean({ default: true }),
  ALARM_DEDUP_MS: Int(2000, 0, 3600000)
})

type Env = Static<typeof EnvSchema>

export interface AlarmEndpoint { host: string, port: number }

/** Every setting but the legacy endpoint, which demo mode may only know once the simulator runs. */
interface Settings {
  host: string
  port: number
  legacyCharset: string
  legacyTimeoutMs: number
  legacyConnectTimeoutMs: number
  legacyLoginMethod: string
  legacyLogoutMethod: string
  legacyHeartbeatMethod: string | undefined
  legacyHeartbeatMs: number
  upstreamMaxResponseBytes: number
  sessionIdleMs: number
  maxSessions: number
  sessionQueueMax: number
  loginRateLimit: number
  alarmUrl: AlarmEndpoint | undefined
  alarmSubscribe: string
  alarmUnsubscribe: string
  alarmResubscribeMs: number
  alarmBuffer: number
  /** undefined: same origin only. */
  allowedOrigins: string[] | undefined
  trustProxy: FastifyServerOptions['trustProxy']
  cookieSecure: boolean
  logLevel: string
  bodyLimit: number
  shutdownTimeoutMs: number
  instanceName: string | undefined
  /** Upstream calls in flight over all sessions; beyond it 503 UPSTREAM_UNAVAILABLE with Retry-After. */
  upstreamMaxConcurrent: number
  /** A larger alarm datagram is dropped and counted. */
  alarmMaxBytes: number
  wsPingMs: number
  /** A WebSocket client whose unsent data passes this is cut off (close 1013). */
  wsMaxBufferedBytes: number
  /** Serve the demo console at /: on in demo mode, off otherwise unless set. */
  consoleEnabled: boolean
  /** How often /readyz's cached probe of the legacy server is refreshed. */
  readyProbeMs: number
  /** Request headers /api/xml/* forwards beyond its default list (lower case). */
  legacyForwardHeaders: string[]
  /** Legacy answer headers /api/xml/* passes to the browser beyond its default list (lower case). */
  legacyExposeHeaders: string[]
  /** The params of the gateway's own calls (lib/call-template.ts). */
  legacyLoginParams: CallTemplate
  legacyLogoutParams: CallTemplate
  legacyHeartbeatParams: CallTemplate
  /** Which methods /api/rpc/* may call (RPC_ALLOW, RPC_DENY; lib/policy.ts). */
  rpcPolicy: Policy
  /** Which paths /api/xml/* may reach (XML_ALLOW, XML_DENY). */
  xmlPolicy: Policy
  /** One log line per browser-initiated legacy call (plugins/audit.ts). */
  auditLog: boolean
  /** Calls in one POST /api/rpc batch. */
  rpcBatchMax: number
  /** Whether a batch travels as one system.multicall (auto: as the legacy server shows). */
  legacyMulticall: 'auto' | 'true' | 'false'
  /** The operator API's own listener (plugins/admin.ts); off when adminPort is undefined. */
  adminHost: string
  adminPort: number | undefined
  /** Set (at least ADMIN_TOKEN_MIN_LENGTH characters) whenever adminPort is. */
  adminToken: string | undefined
  /** Cluster mode: the Redis URL of the shared alarm stream (lib/alarm-bus.ts); undefined: in-process. */
  alarmBusUrl: string | undefined
  alarmStream: string
  /** With a bus: whether this instance subscribes to the UDP alarm server and appends. */
  alarmIngest: boolean
  alarmDedupMs: number
  /** LEGACY_URL was unset: the legacy system is the built-in simulator (lib/demo.ts). */
  demo: boolean
}

/** The configuration the gateway runs with: the legacy XML-RPC endpoint is known. */
export interface AppConfig extends Settings {
  legacyUrl: URL
}

/**
 * The configuration as the environment gives it. Without LEGACY_URL the endpoint is not known
 * yet: lib/demo.ts starts the simulator and resolves it to an AppConfig.
 */
export type Config = AppConfig | (Settings & { legacyUrl: undefined })

/** Thrown for a bad configuration value; `message` is the one line an operator sees. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

function describe (env: Record<string, unknown>, variable: string, problem: string): string {
  const raw = env[variable]
  return `invalid configuration: ${variable} ${problem}` + (raw === undefined ? '' : ` (got ${JSON.stringify(raw)})`)
}

function parseTrustProxy (value: string | undefined): FastifyServerOptions['trustProxy'] {
  if (value === undefined || value === '') return undefined
  if (value === 'true') return true
  if (value === 'false') return false
  // A hop count is valid for Fastify (proxy-addr) though its type does not say so.
  if (/^\d+$/.test(value)) return Number(value) as unknown as string
  return value.split(',').map(s => s.trim()).filter(Boolean)
}

function parseAlarmUrl (value: string): AlarmEndpoint {
  const url = new URL(value)
  const host = url.hostname.replace(/^\[|\]$/g, '')
  const port = Number(url.port)
  if (!host || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error('bad host or port')
  return { host, port }
}

/** A shorter operator token could be guessed; 16 characters of `openssl rand -base64 32` are ~96 bits. */
export const ADMIN_TOKEN_MIN_LENGTH = 16
// A bearer token as RFC 6750 §2.1 writes it (b64token): it must travel in an Authorization header.
const BEARER_TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/

/** The operator token's problem, if any; never quotes the value (it is a secret). */
function adminTokenProblem (env: Env): string | undefined {
  const token = env.ADMIN_TOKEN
  if (env.ADMIN_PORT === undefined) return undefined
  if (token === undefined) return 'must be set when ADMIN_PORT is set (the operator API is never open without a token)'
  if (token.length < ADMIN_TOKEN_MIN_LENGTH) return `must be at least ${ADMIN_TOKEN_MIN_LENGTH} characters (got ${token.length})`
  if (!BEARER_TOKEN.test(token)) return 'must be a bearer token: letters, digits and -._~+/ (then = padding), e.g. from openssl rand -base64 32'
  return undefined
}

// RFC 9110 §5.6.2.
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
// Meaningful on one connection only: forwarding one would describe the wrong connection.
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings']
// The gateway frames the request and the browser's cookies are the gateway's own.
const NEVER_FORWARDED = new Set([...HOP_BY_HOP, 'host', 'content-length', 'cookie'])
const NEVER_EXPOSED = new Set([...HOP_BY_HOP, 'set-cookie', 'set-cookie2'])

/** A comma-separated list of header names, lower-cased; the first name that may not be listed is refused. */
function parseHeaderNames (env: Record<string, unknown>, variable: string, value: string | undefined, refused: (name: string) => boolean): string[] {
  const names = new Set<string>()
  for (const item of (value ?? '').split(',')) {
    const name = item.trim().toLowerCase()
    if (name === '') continue
    if (!TOKEN.test(name)) throw new ConfigError(describe(env, variable, `must be a comma-separated list of header names (${JSON.stringify(name)} is not one)`))
    if (refused(name)) throw new ConfigError(describe(env, variable, `may not name ${name}`))
    names.add(name)
  }
  return [...names]
}

/** A call template variable, checked by writing one call with it at start. */
function parseTemplate (env: Record<string, unknown>, variable: string, text: string, allowed: readonly Placeholder[]): CallTemplate {
  let template: CallTemplate
  try {
    template = parseCallTemplate(text, allowed)
    encodeCall('check', template.fill({ username: 'u', password: 'p' }))
  } catch (err) {
    // The value is shown (it is the operator's own template, placeholders and all: never a password).
    const problem = err instanceof CallTemplateError ? err.message : `cannot be sent as XML-RPC params (${(err as Error).message})`
    throw new ConfigError(describe(env, variable, problem), { cause: err })
  }
  return template
}

function parsePolicy (build: () => Policy): Policy {
  try {
    return build()
  } catch (err) {
    if (err instanceof PolicyError) throw new ConfigError(`invalid configuration: ${err.message}`, { cause: err })
    throw err
  }
}

function parseOrigins (value: string | undefined): string[] | undefined {
  if (value === undefined || value.trim() === '') return undefined
  return value.split(',').map(s => s.trim()).filter(Boolean).map(o => o === '*' ? o : new URL(o).origin)
}

/**
 * Reads and validates the configuration once. Throws ConfigError naming the first bad
 * variable; server.ts prints it as one line and exits 1.
 */
export function loadConfig (source: NodeJS.ProcessEnv | Record<string, string | undefined> = process.env): Config {
  // Empty strings are "unset" for optional variables (a common shell idiom: FOO= npm start).
  const data: Record<string, string> = {}
  for (const key of Object.keys(EnvSchema.properties)) {
    const value = source[key]
    if (value !== undefined && value !== '') data[key] = value
  }
  let env: Env
  try {
    env = envSchema<Env>({ schema: EnvSchema, data, env: false, dotenv: false })
  } catch (err) {
    const first = (err as { errors?: Array<{ instancePath?: string, message?: string, params?: Record<string, unknown> }> }).errors?.[0]
    const variable = first?.instancePath?.replace(/^\//, '') ?? ''
    if (first && variable) {
      throw new ConfigError(describe(data, variable, first.message ?? 'is invalid'), { cause: err })
    }
    throw new ConfigError(`invalid configuration: ${(err as Error).message}`, { cause: err })
  }

  let legacyUrl: URL | undefined
  if (env.LEGACY_URL !== undefined) {
    try {
      legacyUrl = new URL(env.LEGACY_URL)
    } catch (err) {
      throw new ConfigError(describe(data, 'LEGACY_URL', 'must be an http:// or https:// URL'), { cause: err })
    }
  }
  let alarmUrl: AlarmEndpoint | undefined
  if (env.ALARM_URL !== undefined) {
    try {
      alarmUrl = parseAlarmUrl(env.ALARM_URL)
    } catch (err) {
      throw new ConfigError(describe(data, 'ALARM_URL', 'must be udp://host:port'), { cause: err })
    }
  }
  let allowedOrigins: string[] | undefined
  try {
    allowedOrigins = parseOrigins(env.ALLOWED_ORIGINS)
  } catch (err) {
    throw new ConfigError(describe(data, 'ALLOWED_ORIGINS', 'must be a comma-separated list of origins like https://app.example.com'), { cause: err })
  }
  const charset = normalizeCharset(env.LEGACY_CHARSET)
  if (charset === undefined) {
    throw new ConfigError(describe(data, 'LEGACY_CHARSET', 'is not a known charset (utf-8, gbk, gb18030, big5, …)'))
  }
  if (env.LEGACY_HEARTBEAT_MS > 0 && env.LEGACY_HEARTBEAT_METHOD === undefined) {
    throw new ConfigError(describe(data, 'LEGACY_HEARTBEAT_METHOD', 'must be set when LEGACY_HEARTBEAT_MS is above 0'))
  }

  const tokenProblem = adminTokenProblem(env)
  if (tokenProblem !== undefined) throw new ConfigError(`invalid configuration: ADMIN_TOKEN ${tokenProblem}`)
  if (env.ADMIN_PORT !== undefined && env.ADMIN_PORT !== 0 && env.ADMIN_PORT === env.PORT) {
    throw new ConfigError(describe(data, 'ADMIN_PORT', 'must differ from PORT: the operator API never shares the browsers\' port'))
  }
  if (env.ALARM_BUS_URL !== undefined) {
    try {
      const url = new URL(env.ALARM_BUS_URL)
      if (url.hostname === '' || !/^\/?\d*$/.test(url.pathname)) throw new Error('bad host or database')
    } catch (err) {
      throw new ConfigError(describe(data, 'ALARM_BUS_URL', 'must be redis://[user:password@]host:port[/db] (or rediss://)'), { cause: err })
    }
  }

  const legacyForwardHeaders = parseHeaderNames(data, 'LEGACY_FORWARD_HEADERS', env.LEGACY_FORWARD_HEADERS, name => NEVER_FORWARDED.has(name))
  // The gateway owns its CORS policy: a legacy Access-Control-* header would grant other origins
  // what the gateway does not.
  const legacyExposeHeaders = parseHeaderNames(data, 'LEGACY_EXPOSE_HEADERS', env.LEGACY_EXPOSE_HEADERS, name => NEVER_EXPOSED.has(name) || name.startsWith('access-control-'))

  const legacyLoginParams = parseTemplate(data, 'LEGACY_LOGIN_PARAMS', env.LEGACY_LOGIN_PARAMS, ['username', 'password'])
  // The password is known at login only: the gateway never keeps it.
  const legacyLogoutParams = parseTemplate(data, 'LEGACY_LOGOUT_PARAMS', env.LEGACY_LOGOUT_PARAMS, ['username'])
  const legacyHeartbeatParams = parseTemplate(data, 'LEGACY_HEARTBEAT_PARAMS', env.LEGACY_HEARTBEAT_PARAMS, ['username'])
  const rpcPolicy = parsePolicy(() => methodPolicy(env.RPC_ALLOW, env.RPC_DENY))
  const xmlPolicy = parsePolicy(() => pathPolicy(env.XML_ALLOW, env.XML_DENY))

  const demo = legacyUrl === undefined
  return {
    host: env.HOST,
    port: env.PORT,
    legacyUrl,
    legacyCharset: charset,
    legacyTimeoutMs: env.LEGACY_TIMEOUT_MS,
    legacyConnectTimeoutMs: env.LEGACY_CONNECT_TIMEOUT_MS,
    legacyLoginMethod: env.LEGACY_LOGIN_METHOD,
    legacyLogoutMethod: env.LEGACY_LOGOUT_METHOD,
    legacyHeartbeatMethod: env.LEGACY_HEARTBEAT_METHOD,
    legacyHeartbeatMs: env.LEGACY_HEARTBEAT_MS,
    upstreamMaxResponseBytes: env.UPSTREAM_MAX_RESPONSE_BYTES,
    sessionIdleMs: env.SESSION_IDLE_MS,
    maxSessions: env.MAX_SESSIONS,
    sessionQueueMax: env.SESSION_QUEUE_MAX,
    loginRateLimit: env.LOGIN_RATE_LIMIT,
    alarmUrl,
    alarmSubscribe: env.ALARM_SUBSCRIBE,
    alarmUnsubscribe: env.ALARM_UNSUBSCRIBE,
    alarmResubscribeMs: env.ALARM_RESUBSCRIBE_MS,
    alarmBuffer: env.ALARM_BUFFER,
    allowedOrigins,
    trustProxy: parseTrustProxy(env.TRUST_PROXY),
    cookieSecure: env.COOKIE_SECURE ?? !demo,
    logLevel: env.LOG_LEVEL,
    bodyLimit: env.BODY_LIMIT,
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
    instanceName: env.INSTANCE_NAME,
    upstreamMaxConcurrent: env.UPSTREAM_MAX_CONCURRENT,
    alarmMaxBytes: env.ALARM_MAX_BYTES,
    wsPingMs: env.WS_PING_MS,
    wsMaxBufferedBytes: env.WS_MAX_BUFFERED_BYTES,
    consoleEnabled: env.CONSOLE_ENABLED ?? demo,
    readyProbeMs: env.READY_PROBE_MS,
    legacyForwardHeaders,
    legacyExposeHeaders,
    legacyLoginParams,
    legacyLogoutParams,
    legacyHeartbeatParams,
    rpcPolicy,
    xmlPolicy,
    auditLog: env.AUDIT_LOG,
    rpcBatchMax: env.RPC_BATCH_MAX,
    legacyMulticall: env.LEGACY_MULTICALL,
    adminHost: env.ADMIN_HOST,
    adminPort: env.ADMIN_PORT,
    adminToken: env.ADMIN_PORT === undefined ? undefined : env.ADMIN_TOKEN,
    alarmBusUrl: env.ALARM_BUS_URL,
    alarmStream: env.ALARM_STREAM,
    alarmIngest: env.ALARM_INGEST,
    alarmDedupMs: env.ALARM_DEDUP_MS,
    demo
  }
}
