/**
 * The demo console (served at / when CONSOLE_ENABLED): log in, call methods, browse XML as JSON,
 * watch alarms live. Everything the server sends is shown with textContent, never as markup; the
 * page runs under a CSP without inline scripts.
 */
import { createClient, GatewayError, type AlarmEvent, type AlarmStatus, type AlarmSubscription, type SessionEndState } from './legacy-gateway.js'

/** DOM rows kept in the table; the count keeps counting beyond it. */
const MAX_ROWS = 1000
const LEVELS = new Set(['critical', 'major', 'minor', 'warning'])

type Tone = 'ok' | 'warn' | 'error' | 'info' | 'neutral'

function byId<T extends HTMLElement = HTMLElement> (id: string): T {
  const found = document.getElementById(id)
  if (found === null) throw new Error(`console: #${id} is missing from the page`)
  return found as T
}

const ui = {
  who: byId('who'),
  logout: byId<HTMLButtonElement>('logout'),
  demoTag: byId('demo-tag'),
  banner: byId('banner'),
  bannerTitle: byId('banner-title'),
  bannerText: byId('banner-text'),
  loginCard: byId('login-card'),
  loginForm: byId<HTMLFormElement>('login-form'),
  loginButton: byId<HTMLButtonElement>('login-button'),
  loginError: byId('login-error'),
  username: byId<HTMLInputElement>('username'),
  password: byId<HTMLInputElement>('password'),
  demoHint: byId('demo-hint'),
  workspace: byId('workspace'),
  callForm: byId<HTMLFormElement>('call-form'),
  callButton: byId<HTMLButtonElement>('call-button'),
  method: byId<HTMLInputElement>('method'),
  params: byId<HTMLInputElement>('params'),
  methodExamples: byId('method-examples'),
  methods: byId('methods'),
  methodsCount: byId('methods-count'),
  methodList: byId('method-list'),
  callMeta: byId('call-meta'),
  callOutput: byId('call-output'),
  xmlForm: byId<HTMLFormElement>('xml-form'),
  xmlButton: byId<HTMLButtonElement>('xml-button'),
  xmlPath: byId<HTMLInputElement>('xml-path'),
  xmlExamples: byId('xml-examples'),
  xmlMeta: byId('xml-meta'),
  xmlOutput: byId('xml-output'),
  alarmCount: byId('alarm-count'),
  feedStatus: byId('feed-status'),
  alarmClear: byId<HTMLButtonElement>('alarm-clear'),
  alarmRows: byId<HTMLTableSectionElement>('alarm-rows'),
  alarmEmpty: byId('alarm-empty')
}

const demo = document.body.dataset.demo === 'true'
const gw = createClient()

let feed: AlarmSubscription | null = null
/** Where the next alarm stream starts: after a lost session the table continues without a hole. */
let resumeAfter: number | undefined
const shown = new Set<string>()
let alarmCount = 0
let statusTimer: ReturnType<typeof setInterval> | undefined

function setTone (element: HTMLElement, tone: Tone, text: string): void {
  element.dataset.tone = tone
  element.textContent = text
}

function showBanner (tone: Tone, title: string, text: string): void {
  ui.banner.dataset.tone = tone
  ui.bannerTitle.textContent = title
  ui.bannerText.textContent = text
  ui.banner.hidden = false
}

function setState (state: 'signed-in' | 'signed-out' | 'session-lost', user?: string): void {
  document.body.dataset.state = state
  const signedIn = state === 'signed-in'
  ui.workspace.hidden = !signedIn
  ui.loginCard.hidden = signedIn
  ui.logout.hidden = !signedIn
  if (signedIn) {
    ui.banner.hidden = true
    setTone(ui.who, 'ok', `signed in as ${user ?? '?'}`)
  } else if (state === 'session-lost') {
    setTone(ui.who, 'error', 'session lost')
  } else {
    setTone(ui.who, 'neutral', 'not signed in')
  }
  if (!signedIn) {
    ui.loginError.textContent = ''
    // The user name is usually right; the password is what to type again.
    if (ui.username.value === '') ui.username.focus()
    else ui.password.focus()
  }
}

function describeEnd (state: SessionEndState | string): string {
  switch (state) {
    case 'expired': return 'it was idle for too long'
    case 'logout': return 'it was logged out'
    case 'lost': return 'the connection to the legacy server closed'
    case 'revoked': return 'it was ended by an operator'
    default: return state
  }
}

function sessionLost (why: string, title = 'Session lost —'): void {
  stopFeed(true)
  showBanner('error', title, `${why}. Log in again to continue.`)
  setState('session-lost')
}

/** Errors of calls: a session that ended switches the whole page over. */
function handleSessionError (err: unknown): boolean {
  if (err instanceof GatewayError && err.sessionEnded) {
    // SESSION_LOST says why in parentheses: "The session ended (<why>): log in again".
    const why = err.code === 'SESSION_LOST' ? /\((.+)\)/.exec(err.message)?.[1] ?? err.message : 'the gateway does not know this session any more'
    sessionLost(why)
    return true
  }
  return false
}

function formatError (err: unknown): string {
  if (err instanceof GatewayError) {
    const lines = [`${err.code}${err.status ? ` (HTTP ${err.status})` : ''}`]
    if (err.faultCode !== undefined) lines.push(`faultCode: ${err.faultCode}`)
    lines.push(err.message)
    return lines.join('\n')
  }
  return err instanceof Error ? err.message : String(err)
}

function pretty (value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value, null, 2)
}

async function timed<T> (button: HTMLButtonElement, meta: HTMLElement, run: () => Promise<T>): Promise<T> {
  button.disabled = true
  meta.textContent = 'working…'
  const started = performance.now()
  try {
    return await run()
  } finally {
    button.disabled = false
    meta.textContent = `${Math.round(performance.now() - started)} ms`
  }
}

// ---- alarms -------------------------------------------------------------------------------------

/** A string for a cell: mapped XML values are strings, or objects when they carry attributes. */
function text (value: unknown): string {
  if (value === undefined || value === null) return ''
  if (typeof value === 'string') return value
  if (typeof value === 'object' && !Array.isArray(value) && typeof (value as Record<string, unknown>)['#text'] === 'string') {
    return (value as Record<string, string>)['#text'] ?? ''
  }
  return JSON.stringify(value)
}

function cell (row: HTMLTableRowElement, content: string | Node, className?: string): void {
  const td = document.createElement('td')
  if (className !== undefined) td.className = className
  if (typeof content === 'string') td.textContent = content
  else td.append(content)
  row.append(td)
}

function updateCount (): void {
  ui.alarmCount.textContent = String(alarmCount)
  ui.alarmEmpty.hidden = ui.alarmRows.childElementCount > 0
}

function prependRow (row: HTMLTableRowElement): void {
  ui.alarmRows.prepend(row)
  while (ui.alarmRows.childElementCount > MAX_ROWS) ui.alarmRows.lastElementChild?.remove()
  updateCount()
}

function addAlarm (event: AlarmEvent): void {
  // The datagram's root element is usually <alarm>; show its fields, whatever the root is called.
  const keys = Object.keys(event.alarm)
  const root = keys.length === 1 ? event.alarm[keys[0] ?? ''] : undefined
  const fields = (typeof root === 'object' && root !== null && !Array.isArray(root) ? root : event.alarm) as Record<string, unknown>
  const key = `${event.instance}:${event.seq}`
  if (shown.has(key)) return
  shown.add(key)
  alarmCount++

  const level = text(fields.level).trim().toLowerCase()
  const row = document.createElement('tr')
  row.className = 'fresh'
  row.dataset.seq = String(event.seq)
  row.dataset.id = text(fields.id)
  row.dataset.level = level
  const badge = document.createElement('span')
  badge.className = `level level-${LEVELS.has(level) ? level : 'other'}`
  badge.textContent = level || '—'
  const when = new Date(event.receivedAt)
  cell(row, String(event.seq), 'num')
  cell(row, Number.isNaN(when.getTime()) ? event.receivedAt : when.toLocaleTimeString(), 'num')
  cell(row, badge)
  cell(row, text(fields.source))
  cell(row, text(fields.message), 'msg')
  cell(row, text(fields.id), 'num')
  prependRow(row)
}

function addGapRow (from: number, to: number): void {
  const row = document.createElement('tr')
  row.className = 'gap'
  const td = document.createElement('td')
  td.colSpan = 6
  td.textContent = `Alarms ${from}–${to} are no longer buffered by the gateway and cannot be shown.`
  row.append(td)
  prependRow(row)
}

function showFeedStatus (status: AlarmStatus): void {
  if (statusTimer !== undefined) clearInterval(statusTimer)
  statusTimer = undefined
  switch (status.state) {
    case 'connecting':
      setTone(ui.feedStatus, 'warn', 'connecting…')
      return
    case 'open':
      setTone(ui.feedStatus, 'ok', 'live')
      return
    case 'restarted':
      setTone(ui.feedStatus, 'info', 'gateway restarted: reloading its buffer')
      return
    case 'reconnecting': {
      const until = Date.now() + status.delayMs
      const tick = (): void => {
        const left = Math.max(0, until - Date.now())
        setTone(ui.feedStatus, 'warn', `disconnected: retrying in ${(left / 1000).toFixed(1)} s`)
      }
      tick()
      if (status.delayMs > 200) statusTimer = setInterval(tick, 200)
      return
    }
    case 'closed':
      setTone(ui.feedStatus, 'neutral', status.reason === 'session' ? 'stopped: session ended' : 'not connected')
  }
}

function stopFeed (remember: boolean): void {
  if (feed === null) return
  if (remember) resumeAfter = feed.lastSeq
  feed.close()
  feed = null
}

function startFeed (): void {
  stopFeed(false)
  const since = resumeAfter
  resumeAfter = undefined
  feed = gw.alarms({
    ...(since === undefined ? {} : { since }),
    onAlarm: addAlarm,
    onGap: (gap) => { addGapRow(gap.from, gap.to) },
    onStatus: showFeedStatus,
    onSessionEnd: (state) => {
      if (state === 'logout') {
        stopFeed(false)
        showBanner('info', 'Logged out —', 'the session was logged out (perhaps in another tab).')
        setState('signed-out')
      } else {
        sessionLost(describeEnd(state), state === 'revoked' ? 'Session ended —' : undefined)
      }
    }
  })
}

// ---- forms --------------------------------------------------------------------------------------

ui.loginForm.addEventListener('submit', (event) => {
  event.preventDefault()
  ui.loginError.textContent = ''
  timed(ui.loginButton, ui.loginError, async () => await gw.login(ui.username.value.trim(), ui.password.value))
    .then((res) => {
      ui.password.value = demo ? ui.password.value : ''
      ui.loginError.textContent = ''
      setState('signed-in', res.user)
      startFeed()
      loadMethods()
    }, (err: unknown) => {
      ui.loginError.textContent = err instanceof GatewayError && err.code === 'DRAINING'
        ? 'DRAINING: this gateway is being taken out of service for maintenance and accepts no new logins. Try again in a moment; you may be sent to another instance.'
        : err instanceof GatewayError ? `${err.code}: ${err.message}` : formatError(err)
    })
})

ui.logout.addEventListener('click', () => {
  // Our own logout is not news: stop listening before the gateway says so.
  stopFeed(false)
  gw.logout().catch(() => {}).finally(() => {
    ui.banner.hidden = true
    setState('signed-out')
    setTone(ui.feedStatus, 'neutral', 'not connected')
  })
})

ui.callForm.addEventListener('submit', (event) => {
  event.preventDefault()
  let params: unknown
  try {
    params = JSON.parse(ui.params.value.trim() === '' ? '[]' : ui.params.value)
  } catch (err) {
    setTone(ui.callOutput, 'error', `The parameters are not valid JSON: ${(err as Error).message}`)
    return
  }
  if (!Array.isArray(params)) {
    setTone(ui.callOutput, 'error', 'The parameters must be a JSON array, e.g. ["hello", 42]')
    return
  }
  const method = ui.method.value.trim()
  timed(ui.callButton, ui.callMeta, async () => await gw.call(method, ...(params as unknown[])))
    .then((result) => { setTone(ui.callOutput, 'ok', pretty(result)) }, (err: unknown) => {
      if (!handleSessionError(err)) setTone(ui.callOutput, 'error', formatError(err))
    })
})

ui.xmlForm.addEventListener('submit', (event) => {
  event.preventDefault()
  const path = ui.xmlPath.value.trim()
  timed(ui.xmlButton, ui.xmlMeta, async () => await gw.xml(path))
    .then((doc) => { setTone(ui.xmlOutput, 'ok', pretty(doc)) }, (err: unknown) => {
      if (!handleSessionError(err)) setTone(ui.xmlOutput, 'error', formatError(err))
    })
})

ui.alarmClear.addEventListener('click', () => {
  ui.alarmRows.replaceChildren()
  alarmCount = 0
  updateCount()
})

/** An example value for an XML-RPC type, as the call form's JSON params. */
function exampleOf (type: string): unknown {
  switch (type.toLowerCase()) {
    case 'int': case 'i4': case 'i8': case 'double': return 0
    case 'boolean': return false
    case 'string': return ''
    case 'nil': return null
    case 'struct': return {}
    case 'array': return []
    case 'datetime.iso8601': return { $dateTime: '20260101T00:00:00' }
    case 'base64': return { $base64: '' }
    default: return null
  }
}

/** The legacy server's own methods (GET /api/methods): a list that fills the call form. */
function loadMethods (): void {
  gw.methods().then(({ introspection, methods }) => {
    ui.methods.hidden = false
    if (!introspection) {
      ui.methodsCount.textContent = '(the legacy server does not describe itself)'
      ui.methodList.replaceChildren()
      return
    }
    ui.methodsCount.textContent = `(${methods.length})`
    fillExamples(ui.methodExamples, methods.map(m => m.name))
    ui.methodList.replaceChildren(...methods.map((m) => {
      const item = document.createElement('li')
      const button = document.createElement('button')
      button.type = 'button'
      button.className = 'link mono'
      button.textContent = m.name
      button.dataset.method = m.name
      const signature = m.signatures?.[0]
      button.addEventListener('click', () => {
        ui.method.value = m.name
        ui.params.value = JSON.stringify(signature === undefined ? [] : signature.slice(1).map(exampleOf))
        ui.params.focus()
      })
      item.append(button)
      if (signature !== undefined) item.append(` (${signature.slice(1).join(', ')}) → ${signature[0] ?? '?'}`)
      if (m.help !== null) {
        const help = document.createElement('span')
        help.className = 'meta'
        help.textContent = ` — ${m.help}`
        item.append(help)
      }
      return item
    }))
  }, (err: unknown) => {
    if (!handleSessionError(err)) {
      ui.methods.hidden = false
      ui.methodsCount.textContent = `(not available: ${formatError(err)})`
    }
  })
}

function fillExamples (list: HTMLElement, values: readonly string[]): void {
  list.replaceChildren(...values.map((value) => {
    const option = document.createElement('option')
    option.value = value
    return option
  }))
}

// ---- start --------------------------------------------------------------------------------------

if (demo) {
  ui.demoTag.hidden = false
  ui.demoHint.hidden = false
  ui.username.value = 'demo'
  ui.password.value = 'demo'
  // The simulator's methods and documents (sim/legacy.ts); a real legacy system has its own.
  fillExamples(ui.methodExamples, ['whoami', 'echo', 'fault', 'sleep', 'ping', 'system.listMethods'])
  fillExamples(ui.xmlExamples, ['xml/devices', 'xml/device?id=p3', 'xml/device?id=v1', 'xml/text'])
}

gw.session().then((info) => {
  setState('signed-in', info.user)
  startFeed()
}, (err: unknown) => {
  if (err instanceof GatewayError && err.code === 'SESSION_LOST') {
    // "The session ended (<why>): log in again": an operator, idleness, the legacy socket.
    const why = /\((.+)\)/.exec(err.message)?.[1] ?? 'the connection to the legacy server closed'
    showBanner('error', 'Session lost —', `${why}. Log in again to continue.`)
    setState('session-lost')
  } else {
    if (!(err instanceof GatewayError && err.status === 401)) showBanner('error', 'The gateway cannot be reached —', formatError(err))
    setState('signed-out')
  }
})
