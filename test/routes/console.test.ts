import t from 'tap'
import { build } from '../helper.js'

// Needs the client build (tsc -p client/tsconfig.json, part of `npm run build`).

t.test('CONSOLE_ENABLED=true: the page, its assets and a strict CSP', async (t) => {
  const { app } = await build(t, { env: { CONSOLE_ENABLED: 'true' } })

  const page = await app.inject({ method: 'GET', url: '/' })
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /^text\/html/)
  const csp = String(page.headers['content-security-policy'])
  t.match(csp, /default-src 'self'/)
  t.match(csp, /connect-src 'self'/)
  t.notMatch(csp, /unsafe-inline|unsafe-eval/)
  t.equal(page.headers['x-content-type-options'], 'nosniff')
  t.equal(page.headers['x-frame-options'], 'DENY')
  t.match(page.body, /data-demo="false"/, 'not demo mode: nothing prefilled')
  // Every script is a file (the CSP forbids inline ones), and there are no inline styles or handlers.
  const scripts = page.body.match(/<script\b[^>]*>/g) ?? []
  t.ok(scripts.length > 0)
  t.ok(scripts.every(s => / src="\/[^"]+"/.test(s)), 'no inline script')
  t.notMatch(page.body, /\son[a-z]+=|style=/i, 'no inline handlers or styles')

  for (const [url, type] of [['/console.js', /javascript/], ['/legacy-gateway.js', /javascript/], ['/console.css', /text\/css/], ['/favicon.svg', /image\/svg\+xml/]] as const) {
    const res = await app.inject({ method: 'GET', url })
    t.equal(res.statusCode, 200, url)
    t.match(res.headers['content-type'], type, `${url} content-type`)
    t.equal(res.headers['cache-control'], 'no-cache', `${url} is revalidated`)
  }
  const head = await app.inject({ method: 'HEAD', url: '/' })
  t.equal(head.statusCode, 200)

  // The console's routes are named ones: the gateway's own are untouched.
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200)
  const notFound = await app.inject({ method: 'GET', url: '/api/nothing' })
  t.equal(notFound.statusCode, 404)
  t.match(notFound.json(), { code: 'NOT_FOUND' })
  t.equal((await app.inject({ method: 'GET', url: '/index.html' })).statusCode, 404)
  t.equal((await app.inject({ method: 'GET', url: '/../package.json' })).statusCode, 404)
  t.equal((await app.inject({ method: 'GET', url: '/console.d.ts' })).statusCode, 404)
})

t.test('demo mode: the console is on by default and says so to the page', async (t) => {
  // As `npm start` without LEGACY_URL: lib/demo.ts starts the simulator and resolves the config.
  const { app, config } = await build(t, { demo: true })
  t.equal(config.demo, true)
  t.equal(config.consoleEnabled, true)
  const page = await app.inject({ method: 'GET', url: '/' })
  t.equal(page.statusCode, 200)
  t.match(page.body, /data-demo="true"/)
})

t.test('console disabled: no page, the client library is still served', async (t) => {
  const { app } = await build(t, { env: { CONSOLE_ENABLED: 'false' } })
  t.equal(app.config.consoleEnabled, false)
  const page = await app.inject({ method: 'GET', url: '/' })
  t.equal(page.statusCode, 404)
  t.match(page.json(), { code: 'NOT_FOUND' })
  t.equal((await app.inject({ method: 'GET', url: '/console.js' })).statusCode, 404)
  const lib = await app.inject({ method: 'GET', url: '/legacy-gateway.js' })
  t.equal(lib.statusCode, 200)
  t.match(lib.body, /export function createClient/)
})
