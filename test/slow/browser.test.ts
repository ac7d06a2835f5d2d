// End to end in a real browser (Debian's chromium, driven by playwright-core): the demo console
// against the real gateway and the simulator, all on loopback. Saves test-artifacts/console.png.
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { chromium, type Page } from 'playwright-core'
import { build, startSimulator } from '../helper.js'
import { until } from '../client/fake-gateway.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const ARTIFACTS = new URL('../../../test-artifacts/', import.meta.url)
const SECOND = 1000

t.setTimeout(60 * SECOND)

if (!existsSync(CHROMIUM)) {
  t.fail(`no chromium at ${CHROMIUM}: apt-get install chromium (.ci/run does), or set CHROMIUM_PATH`)
} else {
  t.test('the console in chromium: login, call, XML, live alarms, session loss, reconnect', async (t) => {
    const sim = await startSimulator(t, { alarmIntervalMs: 0 })
    // RPC_DENY: a method the site's policy refuses, shown like any other error.
    // With the operator API on its own port, to end the browser's session the way an operator would.
    const adminToken = 'browser-test-operator-token-0123456789'
    const { app, url } = await build(t, { sim, listen: true, env: { CONSOLE_ENABLED: 'true', ALARM_URL: sim.alarmUrl, ADMIN_PORT: '0', ADMIN_TOKEN: adminToken, RPC_DENY: 'sleep' } })
    const operator = async (method: string, path: string): Promise<Response> =>
      await fetch(`${app.adminUrl ?? ''}${path}`, { method, headers: { authorization: `Bearer ${adminToken}` } })

    // Test-only: the gateway's end of every alarm WebSocket, so the test can cut them the way a
    // crash or a proxy timeout would (no close frame). Nothing of this ships.
    const upgrades: string[] = []
    const wsSockets = new Set<Socket>()
    app.server.on('upgrade', (req, socket: Socket) => {
      if (!req.url?.startsWith('/ws/alarms')) return
      upgrades.push(req.url)
      wsSockets.add(socket)
      socket.once('close', () => wsSockets.delete(socket))
    })

    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      // playwright adds --headless itself; --no-sandbox because CI runs as root in a container.
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update']
    })
    t.teardown(() => browser.close())
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    page.setDefaultTimeout(10 * SECOND)
    // Anything the page's CSP blocked, and any uncaught error, fails the test at the end.
    const problems: string[] = []
    page.on('console', (msg) => {
      if (/content.security.policy|refused to/i.test(msg.text())) problems.push(msg.text())
    })
    page.on('pageerror', (err) => { problems.push(err.message) })
    await page.exposeFunction('cspViolation', (what: string) => { problems.push(`CSP: ${what}`) })
    // A string: this file is compiled without the DOM library.
    await page.addInitScript({
      content: "document.addEventListener('securitypolicyviolation', (e) => { window.cspViolation(e.violatedDirective + ' ' + e.blockedURI) })"
    })

    const rowIds = async (): Promise<string[]> => await page.locator('#alarm-rows tr[data-id]').evaluateAll(rows => rows.map(r => r.getAttribute('data-id') ?? ''))
    const waitRows = async (n: number, timeout = 10 * SECOND): Promise<void> => {
      await page.locator('#alarm-rows tr[data-id]').nth(n - 1).waitFor({ state: 'attached', timeout })
    }
    const login = async (p: Page): Promise<void> => {
      await p.fill('#username', 'demo')
      await p.fill('#password', 'demo')
      await p.click('#login-button')
      await p.locator('#who', { hasText: 'signed in as demo' }).waitFor()
      await p.locator('#feed-status', { hasText: 'live' }).waitFor()
    }

    await t.test('log in', async (t) => {
      const res = await page.goto(`${url}/`)
      t.equal(res?.status(), 200)
      t.match(res?.headers()['content-security-policy'], /connect-src 'self'/)
      await page.locator('#login-card').waitFor()
      t.equal(await page.locator('#workspace').isVisible(), false, 'nothing but the login form before login')
      await login(page)
      t.equal(await page.locator('#login-card').isVisible(), false)
      t.match(upgrades[0], /^\/ws\/alarms$/, 'the first alarm stream asks for live alarms')
    })

    await t.test('call a method, see a result and a fault', async (t) => {
      await page.fill('#method', 'fault')
      await page.fill('#params', '[7, "valve stuck"]')
      await page.click('#call-button')
      await page.locator('#call-output[data-tone="error"]').waitFor()
      const fault = await page.locator('#call-output').textContent() ?? ''
      t.match(fault, /RPC_FAULT/)
      t.match(fault, /faultCode: 7/)
      t.match(fault, /valve stuck/)

      await page.fill('#method', 'whoami')
      await page.fill('#params', '[]')
      await page.click('#call-button')
      await page.locator('#call-output[data-tone="ok"]').waitFor()
      t.match(JSON.parse(await page.locator('#call-output').textContent() ?? ''), { user: 'demo', socket: Number })
    })

    await t.test('a method the policy refuses: its 403 is shown like any other error, and the session goes on', async (t) => {
      const before = sim.ledger.length
      await page.fill('#method', 'sleep')
      await page.fill('#params', '[10]')
      await page.click('#call-button')
      await page.locator('#call-output[data-tone="error"]').waitFor()
      const refused = await page.locator('#call-output').textContent() ?? ''
      t.match(refused, /FORBIDDEN \(HTTP 403\)/)
      t.match(refused, /sleep may not be called through the gateway/)
      t.equal(sim.ledger.length, before, 'nothing reached the legacy server')
      t.equal(await page.locator('#login-card').isVisible(), false, 'still logged in')
      await page.fill('#method', 'whoami')
      await page.fill('#params', '[]')
      await page.click('#call-button')
      await page.locator('#call-output[data-tone="ok"]').waitFor()
    })

    await t.test('the legacy server\'s methods are listed; one fills the call form', async (t) => {
      await page.locator('#methods').waitFor()
      await page.locator('#methods summary').click()
      const names = await page.locator('#method-list button').allTextContents()
      t.ok(names.includes('fault') && names.includes('whoami'), `methods listed (${names.length})`)
      t.notOk(names.includes('sleep'), 'not a method the policy refuses')
      t.notOk(names.includes('login'), 'not the gateway\'s reserved ones')
      await page.locator('#method-list button[data-method="fault"]').click()
      t.equal(await page.inputValue('#method'), 'fault')
      t.equal(await page.inputValue('#params'), '[0,""]', 'example params from the signature')
      await page.click('#call-button')
      await page.locator('#call-output[data-tone="error"]', { hasText: 'RPC_FAULT' }).waitFor()
    })

    await t.test('browse xml/devices as JSON', async (t) => {
      await page.fill('#xml-path', 'xml/devices')
      await page.click('#xml-button')
      await page.locator('#xml-output[data-tone="ok"]').waitFor()
      const doc = JSON.parse(await page.locator('#xml-output').textContent() ?? '') as { devices: { '@count': string, device: Array<{ name: string, status: string }> } }
      t.equal(doc.devices['@count'], '2')
      t.same(doc.devices.device.map(d => d.name), ['pump-3', '阀门-1'])
      t.equal(doc.devices.device[0]?.status, '  ok  ', 'strings exactly as sent')
    })

    await t.test('simulator alarms appear in the table, newest first', async (t) => {
      await sim.sendAlarms(3)
      await waitRows(3)
      t.same(await rowIds(), ['3', '2', '1'])
      t.equal(await page.locator('#alarm-count').textContent(), '3')
      const levels = await page.locator('#alarm-rows .level').evaluateAll(els => els.map(e => e.className))
      t.ok(levels.every(c => /^level level-(critical|major|minor|warning|other)$/.test(c)), 'a colour class for every level')
    })

    await t.test('a session killed on the legacy side: the page says so, log in again', async (t) => {
      sim.killUser('demo')
      await page.locator('body[data-state="session-lost"]').waitFor()
      t.match(await page.locator('#banner').textContent(), /Session lost/)
      t.match(await page.locator('#banner').textContent(), /log in again/i)
      t.ok(await page.locator('#login-card').isVisible(), 'the login form is back')
      t.match(await page.locator('#who').textContent(), /session lost/)
      await mkdir(ARTIFACTS, { recursive: true })
      await page.screenshot({ path: new URL('console-session-lost.png', ARTIFACTS).pathname })

      // Alarms keep coming while the user is away; the table catches up after the new login.
      await sim.sendAlarms(2)
      await login(page)
      await waitRows(5)
      t.same(await rowIds(), ['5', '4', '3', '2', '1'])
      t.match(upgrades.at(-1), /since=3$/, 'the new stream resumes after the last alarm shown')
    })

    await t.test('the server side drops the WebSocket while alarms flow: none lost, none twice', async (t) => {
      const before = upgrades.length
      // One alarm every 15 ms until both cuts are behind us and the stream is back.
      const stop = new AbortController()
      let sent = 0
      const sender = (async () => {
        while (!stop.signal.aborted) {
          await sim.sendAlarms(1)
          sent++
          await sleep(15)
        }
      })()
      const cutAndWait = async (n: number): Promise<void> => {
        await sleep(150)
        t.ok(wsSockets.size > 0, `an alarm WebSocket is open to cut (${n})`)
        for (const socket of wsSockets) socket.destroy()
        // The client backs off up to 500 ms (full jitter), then resumes.
        await until(`reconnect ${n}`, () => upgrades.length >= before + n && wsSockets.size > 0, 5 * SECOND)
      }
      await cutAndWait(1)
      await cutAndWait(2)
      await sleep(150)
      stop.abort()
      await sender
      const total = 5 + sent
      t.ok(sent > 20, `alarms flowed through both cuts (${sent})`)
      await waitRows(total, 20 * SECOND)
      await page.locator('#feed-status', { hasText: 'live' }).waitFor()
      await sleep(200) // anything extra would show up now

      const ids = await rowIds()
      const expected = Array.from({ length: total }, (_, i) => String(total - i))
      t.same(ids, expected, 'every alarm id exactly once, newest first')
      t.equal(new Set(ids).size, ids.length, 'no duplicates')
      t.equal(await page.locator('#alarm-count').textContent(), String(total))
      const reconnects = upgrades.slice(before)
      t.equal(reconnects.length, 2, `one reconnect per cut (${reconnects.join(', ')})`)
      t.ok(reconnects.every(u => /\?since=\d+$/.test(u)), 'every reconnect resumes with since')
    })

    await t.test('screenshot', async (t) => {
      await page.fill('#method', 'whoami')
      await page.click('#call-button')
      await page.locator('#call-output[data-tone="ok"]').waitFor()
      await page.click('#xml-button')
      await page.locator('#xml-output[data-tone="ok"]').waitFor()
      await page.locator('#xml-button').blur()
      await page.mouse.move(0, 0)
      await sleep(1300) // the new-row highlight fades
      await mkdir(ARTIFACTS, { recursive: true })
      const file = new URL('console.png', ARTIFACTS)
      await page.screenshot({ path: file.pathname })
      t.ok(existsSync(file), `saved ${file.pathname}`)
    })

    await t.test('an operator ends the session: the page says so, log in again', async (t) => {
      const list = await (await operator('GET', '/admin/sessions')).json() as { sessions: Array<{ id: string, user: string, websockets: number }> }
      const mine = list.sessions.filter(s => s.user === 'demo')
      t.equal(mine.length, 1, 'the browser\'s one session is listed')
      t.equal(mine[0]?.websockets, 1, 'with its alarm WebSocket')
      t.equal((await operator('DELETE', `/admin/sessions/${mine[0]?.id ?? ''}`)).status, 204)
      await page.locator('body[data-state="session-lost"]').waitFor()
      const banner = await page.locator('#banner').textContent() ?? ''
      t.match(banner, /Session ended/)
      t.match(banner, /ended by an operator/, 'the console says an operator ended it')
      t.match(banner, /log in again/i)
      t.ok(await page.locator('#login-card').isVisible(), 'the login form is back')
      t.equal(wsSockets.size, 0, 'the alarm WebSocket is closed')
      await mkdir(ARTIFACTS, { recursive: true })
      await page.screenshot({ path: new URL('console-revoked.png', ARTIFACTS).pathname })
      await login(page)
    })

    await t.test('a login while an operator drains the instance: a clear message; after undrain it works', async (t) => {
      t.equal((await operator('POST', '/admin/drain')).status, 204)
      const other = await browser.newPage()
      other.setDefaultTimeout(10 * SECOND)
      t.teardown(() => other.close())
      await other.goto(`${url}/`)
      await other.locator('#login-card').waitFor()
      await other.fill('#username', 'demo')
      await other.fill('#password', 'demo')
      await other.click('#login-button')
      await other.locator('#login-error', { hasText: 'DRAINING' }).waitFor()
      t.match(await other.locator('#login-error').textContent(), /taken out of service for maintenance/)
      t.equal(await other.locator('#workspace').isVisible(), false, 'not logged in')
      // The first page's session goes on meanwhile.
      await page.fill('#method', 'whoami')
      await page.fill('#params', '[]')
      await page.click('#call-button')
      await page.locator('#call-output[data-tone="ok"]').waitFor()
      t.match(await page.locator('#feed-status').textContent(), /live/, 'its alarm stream too')
      t.equal((await operator('DELETE', '/admin/drain')).status, 204)
      await other.click('#login-button')
      await other.locator('#who', { hasText: 'signed in as demo' }).waitFor()
      t.pass('logged in after the drain')
    })

    await t.test('log out', async (t) => {
      await page.click('#logout')
      await page.locator('body[data-state="signed-out"]').waitFor()
      t.equal(await page.locator('#banner').isVisible(), false, 'our own logout is not news')
      t.match(await page.locator('#feed-status').textContent(), /not connected/)
      t.equal(wsSockets.size, 0, 'the alarm WebSocket is closed')
    })

    t.same(problems, [], 'no CSP violation, no page error')
  })
}
