import { test } from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { EnvSchema, loadConfig, ConfigError } from '../../lib/config.js'

const SERVER = fileURLToPath(new URL('../../server.js', import.meta.url))
// dist/test/lib/ → the repository.
const ROOT = new URL('../../../', import.meta.url)
const read = (path: string): string => readFileSync(new URL(path, ROOT), 'utf8')

/** The variables of .env.example: `NAME=default`, or commented (`# NAME=example`) when it has none. */
function envExample (): Map<string, { value: string, commented: boolean }> {
  const variables = new Map<string, { value: string, commented: boolean }>()
  for (const line of read('.env.example').split('\n')) {
    const match = /^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$/.exec(line)
    if (match?.[2] !== undefined) variables.set(match[2], { value: match[3] ?? '', commented: match[1] !== undefined })
  }
  return variables
}

/** The variables named (in backquotes) in the first column of the table under "## Configuration". */
function configurationTable (path: string): Set<string> {
  const text = read(path)
  const start = text.indexOf('\n## Configuration\n')
  if (start === -1) throw new Error(`${path} has no "## Configuration" section`)
  const end = text.indexOf('\n## ', start + 1)
  const names = new Set<string>()
  for (const line of text.slice(start, end === -1 ? undefined : end).split('\n')) {
    const first = line.startsWith('|') ? line.split('|')[1] ?? '' : ''
    for (const [, name] of first.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) if (name !== undefined) names.add(name)
  }
  return names
}

test('defaults follow CONTRACT §2', async (t) => {
  const c = loadConfig({})
  t.equal(c.host, '127.0.0.1')
  t.equal(c.port, 3000)
  t.equal(c.legacyUrl, undefined)
  t.equal(c.demo, true)
  t.equal(c.legacyCharset, 'utf-8')
  t.equal(c.legacyTimeoutMs, 30000)
  t.equal(c.legacyLoginMethod, 'login')
  t.equal(c.legacyLogoutMethod, 'logout')
  t.equal(c.legacyHeartbeatMethod, undefined)
  t.equal(c.legacyHeartbeatMs, 0)
  t.equal(c.sessionIdleMs, 1800000)
  t.equal(c.maxSessions, 10000)
  t.equal(c.sessionQueueMax, 256)
  t.equal(c.loginRateLimit, 20)
  t.equal(c.alarmUrl, undefined)
  t.equal(c.alarmSubscribe, 'SUBSCRIBE')
  t.equal(c.alarmResubscribeMs, 30000)
  t.equal(c.alarmBuffer, 1000)
  t.equal(c.allowedOrigins, undefined)
  t.equal(c.trustProxy, undefined)
  t.equal(c.cookieSecure, false, 'demo mode: not Secure')
  t.same(c.legacyForwardHeaders, [])
  t.same(c.legacyExposeHeaders, [])
  t.same(c.legacyLoginParams.fill({ username: 'u', password: 'p' }), ['u', 'p'], 'login(username, password)')
  t.same(c.legacyLogoutParams.fill({ username: 'u' }), [])
  t.same(c.legacyHeartbeatParams.fill({ username: 'u' }), [])
  t.same(c.rpcPolicy.allow, ['*'])
  t.same(c.rpcPolicy.deny, [])
  t.same(c.xmlPolicy.allow, ['/*'])
  t.same(c.xmlPolicy.deny, [])
  t.equal(c.auditLog, false)
})

test('values are parsed and typed', async (t) => {
  const c = loadConfig({
    PORT: '8080',
    LEGACY_URL: 'http://10.0.0.5:8080/RPC2',
    LEGACY_CHARSET: 'GBK',
    ALARM_URL: 'udp://10.0.0.5:9001',
    ALLOWED_ORIGINS: 'https://a.example.com, https://b.example.com/',
    TRUST_PROXY: '127.0.0.1,10.0.0.0/8',
    LEGACY_HEARTBEAT_METHOD: 'ping',
    LEGACY_HEARTBEAT_MS: '60000',
    LOGIN_RATE_LIMIT: '0'
  })
  t.equal(c.port, 8080)
  t.equal(c.legacyUrl?.href, 'http://10.0.0.5:8080/RPC2')
  t.equal(c.demo, false)
  t.equal(c.cookieSecure, true, 'Secure by default outside demo mode')
  t.equal(c.legacyCharset, 'gbk')
  t.same(c.alarmUrl, { host: '10.0.0.5', port: 9001 })
  t.same(c.allowedOrigins, ['https://a.example.com', 'https://b.example.com'])
  t.same(c.trustProxy, ['127.0.0.1', '10.0.0.0/8'])
  t.equal(c.legacyHeartbeatMethod, 'ping')
  t.equal(c.loginRateLimit, 0)
  t.equal(loadConfig({ TRUST_PROXY: 'true' }).trustProxy, true)
  t.equal(loadConfig({ TRUST_PROXY: '1' }).trustProxy, 1)
  t.equal(loadConfig({ COOKIE_SECURE: 'true' }).cookieSecure, true)
})

test('header lists: comma-separated, case-insensitive, each name a header token', async (t) => {
  const c = loadConfig({ LEGACY_FORWARD_HEADERS: ' X-Tenant , x-tenant,Authorization,,', LEGACY_EXPOSE_HEADERS: 'X-Legacy-Version, WWW-Authenticate' })
  t.same(c.legacyForwardHeaders, ['x-tenant', 'authorization'])
  t.same(c.legacyExposeHeaders, ['x-legacy-version', 'www-authenticate'])
  const refused: Array<[string, string, RegExp]> = [
    ['LEGACY_FORWARD_HEADERS', 'X-Tenant, Cookie', /may not name cookie/],
    ['LEGACY_FORWARD_HEADERS', 'Host', /may not name host/],
    ['LEGACY_FORWARD_HEADERS', 'content-length', /may not name content-length/],
    ['LEGACY_FORWARD_HEADERS', 'Transfer-Encoding', /may not name transfer-encoding/],
    ['LEGACY_FORWARD_HEADERS', 'Connection', /may not name connection/],
    ['LEGACY_FORWARD_HEADERS', 'keep-alive', /may not name keep-alive/],
    ['LEGACY_FORWARD_HEADERS', 'TE', /may not name te/],
    ['LEGACY_FORWARD_HEADERS', 'Upgrade', /may not name upgrade/],
    ['LEGACY_FORWARD_HEADERS', 'Proxy-Authorization', /may not name proxy-authorization/],
    ['LEGACY_FORWARD_HEADERS', 'X Tenant', /header names \("x tenant" is not one\)/],
    ['LEGACY_FORWARD_HEADERS', 'x-tenant:1', /header names/],
    ['LEGACY_EXPOSE_HEADERS', 'Set-Cookie', /may not name set-cookie/],
    ['LEGACY_EXPOSE_HEADERS', 'X-A, Access-Control-Allow-Origin', /may not name access-control-allow-origin/],
    ['LEGACY_EXPOSE_HEADERS', 'access-control-allow-credentials', /may not name access-control-allow-credentials/],
    ['LEGACY_EXPOSE_HEADERS', 'Access-Control-Expose-Headers', /may not name access-control-expose-headers/],
    ['LEGACY_EXPOSE_HEADERS', 'Transfer-Encoding', /may not name transfer-encoding/],
    ['LEGACY_EXPOSE_HEADERS', 'Connection', /may not name connection/],
    ['LEGACY_EXPOSE_HEADERS', 'x-é', /header names/],
    ['LEGACY_LOGIN_PARAMS', '["{{username}}",', /must be JSON/],
    ['LEGACY_LOGIN_PARAMS', '{"user":"{{username}}"}', /must be a JSON array/],
    ['LEGACY_LOGIN_PARAMS', '[{"{{username}}":"{{password}}"}]', /placeholder in the key/],
    ['LEGACY_LOGIN_PARAMS', '[1e400]', /cannot be sent as XML-RPC params/],
    ['LEGACY_LOGOUT_PARAMS', '["{{username}}","{{password}}"]', /may not use \{\{password\}\}/],
    ['LEGACY_HEARTBEAT_PARAMS', '["{{password}}"]', /may not use \{\{password\}\}/],
    ['LEGACY_HEARTBEAT_PARAMS', '5', /must be a JSON array/],
    ['RPC_ALLOW', 'device.*, bad name', /which is not a pattern/],
    ['RPC_DENY', 'a;b', /which is not a pattern/],
    ['XML_ALLOW', 'reports/*', /which is not a pattern/],
    ['XML_DENY', '/a"b', /which is not a pattern/],
    ['AUDIT_LOG', 'yes', /boolean/]
  ]
  for (const [variable, value, problem] of refused) {
    let error: unknown
    try {
      loadConfig({ [variable]: value })
    } catch (err) {
      error = err
    }
    t.ok(error instanceof ConfigError, `${variable}=${value} is refused`)
    t.match((error as Error).message, new RegExp(`^invalid configuration: ${variable} `), `and names ${variable}`)
    t.match((error as Error).message, problem, 'and says why')
  }
})

test('a bad value names its variable', async (t) => {
  const cases: Array<[Record<string, string>, string]> = [
    [{ PORT: 'abc' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ LEGACY_URL: 'ftp://x' }, 'LEGACY_URL'],
    [{ ALARM_URL: 'http://x' }, 'ALARM_URL'],
    [{ ALARM_URL: 'udp://x' }, 'ALARM_URL'],
    [{ LEGACY_CHARSET: 'klingon' }, 'LEGACY_CHARSET'],
    [{ LEGACY_TIMEOUT_MS: '-1' }, 'LEGACY_TIMEOUT_MS'],
    [{ COOKIE_SECURE: 'maybe' }, 'COOKIE_SECURE'],
    [{ ALLOWED_ORIGINS: 'not a url' }, 'ALLOWED_ORIGINS'],
    [{ LEGACY_HEARTBEAT_MS: '1000' }, 'LEGACY_HEARTBEAT_METHOD']
  ]
  for (const [env, variable] of cases) {
    let error: unknown
    try {
      loadConfig(env)
    } catch (err) {
      error = err
    }
    t.ok(error instanceof ConfigError, `${JSON.stringify(env)} is refused`)
    t.match((error as Error).message, new RegExp(`^invalid configuration: ${variable} `), `and names ${variable}`)
  }
})

test('the server exits 1 with one clear line on a bad value', async (t) => {
  for (const [name, value] of [['PORT', 'abc'], ['LEGACY_URL', 'ftp://x'], ['ALARM_URL', 'http://x'], ['LEGACY_EXPOSE_HEADERS', 'Access-Control-Allow-Origin']] as const) {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, [name]: value }
    const run = spawnSync(process.execPath, [SERVER], { env, encoding: 'utf8', timeout: 20_000 })
    t.equal(run.status, 1, `${name}=${value} exits 1`)
    const lines = run.stderr.trim().split('\n')
    t.equal(lines.length, 1, 'one line')
    t.match(lines[0], new RegExp(`^legacy-gateway: invalid configuration: ${name} `))
  }
})

test('the schema, .env.example and the configuration tables of README and OPERATIONS name the same variables', async (t) => {
  const sources = new Map<string, Set<string>>([
    ['lib/config.ts (EnvSchema)', new Set(Object.keys(EnvSchema.properties))],
    ['.env.example', new Set(envExample().keys())],
    ['README.md (Configuration)', configurationTable('README.md')],
    ['docs/OPERATIONS.md (Configuration)', configurationTable('docs/OPERATIONS.md')]
  ])
  const all = new Set([...sources.values()].flatMap(names => [...names]))
  t.ok(all.size >= 35, `the variables were found (${all.size})`)
  const missing: string[] = []
  for (const name of [...all].sort()) {
    const lacking = [...sources].filter(([, names]) => !names.has(name)).map(([source]) => source)
    if (lacking.length > 0) missing.push(`${name} is missing from ${lacking.join(' and ')}`)
  }
  t.same(missing, [], 'every variable is in all four')
})

test('.env.example shows the defaults: a set line is the schema default, a commented one a variable without one', async (t) => {
  const defaults = new Map(Object.entries(EnvSchema.properties).map(([name, schema]) => [name, 'default' in schema ? schema.default : undefined]))
  const wrong: string[] = []
  for (const [name, { value, commented }] of envExample()) {
    const fallback = defaults.get(name)
    if (commented && fallback !== undefined) wrong.push(`${name} is commented out, but its default is ${String(fallback)}`)
    if (!commented && String(fallback) !== value) wrong.push(`${name}=${value}, but its default is ${String(fallback)}`)
  }
  t.same(wrong, [])
})
