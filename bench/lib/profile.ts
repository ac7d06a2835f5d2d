// Reads a V8 .cpuprofile (node --cpu-prof) and says where the time went: by package or project
// file (self time), by function (self time), and the inclusive time of the frames that matter on
// the gateway's hot path.
import { readFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { table } from './common.js'

interface CallFrame { functionName: string, url: string, lineNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame, children?: number[] }
interface CpuProfile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

export interface Share { name: string, ms: number, pct: number }

export interface ProfileSummary {
  totalMs: number
  /** Share of the wall time the process was busy (not idle). */
  busyPct: number
  byArea: Share[]
  /**
   * Self time by layer: each sample charged to the nearest frame of a package or of the gateway's
   * own files (a builtin, a Node internal or a native binding counts for the code that called it),
   * except the kernel's socket writes (`writev`), the GC and V8's own work, which stand alone.
   */
  byLayer: Share[]
  byFunction: Share[]
  inclusive: Share[]
}

// Frames whose inclusive time tells the story of one call through the gateway. Only synchronous
// work is inside a frame: what runs after an `await` is rooted in the microtask queue instead, so
// async functions count up to their first await ("sync part").
const KEY_FRAMES: Array<[label: string, test: (f: CallFrame) => boolean]> = [
  ['fastify routeHandler (request start, onRequest hooks; sync part)', f => f.functionName === 'routeHandler' && f.url.includes('fastify/lib/route')],
  ['  createChildLogger (per-request pino child)', f => f.functionName === 'createChildLogger' && f.url.includes('fastify/lib')],
  ['  @fastify/cookie onRequest (parse cookies)', f => f.functionName === 'fastifyCookieHandler'],
  ['  requireSession (session lookup, child logger with user)', f => f.url.endsWith('plugins/sessions.js') && f.functionName === ''],
  ['pino child() anywhere', f => f.functionName === 'child' && f.url.includes('pino/lib')],
  ['JSON body parsing', f => f.url.includes('secure-json-parse')],
  ['SessionStore.rpcOnce (sync parts)', f => f.functionName === 'rpcOnce'],
  ['  encodeCall (XML-RPC encode)', f => f.functionName === 'encodeCall'],
  ['  decodeXml (bytes → text)', f => f.functionName === 'decodeXml'],
  ['  decodeResponse (XML-RPC decode)', f => f.functionName === 'decodeResponse'],
  ['    XMLValidator.validate', f => f.functionName === 'validate' && f.url.includes('fast-xml-parser')],
  ['    XMLParser.parse', f => f.functionName === 'parse' && f.url.includes('fast-xml-parser') && f.url.includes('XMLParser')],
  ['PinnedUpstream.request (sync part: undici dispatch)', f => f.functionName === 'request' && f.url.includes('pinned-upstream')],
  ['undici response parsing (llhttp callbacks)', f => f.url.includes('undici/lib/dispatcher/client-h1')],
  ['metrics: onCall (prom-client observe)', f => f.functionName === 'onCall' && f.url.includes('plugins/metrics')],
  ['Reply.send (serialize, onSend hooks, write)', f => f.functionName === 'Reply.send' && f.url.includes('fastify/lib/reply')],
  ['  fast-json-stringify serializer', f => f.url.includes('fast-json-stringify') || (f.functionName === 'serialize' && f.url.includes('fastify/lib/reply'))],
  ['node http server: parse request (parserOnIncoming …)', f => f.functionName === 'parserOnIncoming'],
  ['ws: send to one client', f => f.functionName === 'send' && f.url.includes('ws/lib/websocket')],
  ['alarm feed: datagram → frame', f => f.functionName === 'onDatagram' && f.url.includes('alarm-feed')]
]

function area (f: CallFrame): string {
  const url = f.url
  if (url === '') {
    if (f.functionName.startsWith('(')) return f.functionName // (idle), (program), (garbage collector)
    return '(native: V8 builtins, C++ bindings)'
  }
  if (url.startsWith('node:')) {
    const mod = url.slice(5).replace(/^internal\//, '')
    if (mod.startsWith('streams') || mod === 'stream') return 'node: streams'
    if (mod.startsWith('http') || mod.startsWith('_http')) return 'node: http server'
    if (mod === 'net' || mod.startsWith('stream_base') || mod.startsWith('dns')) return 'node: net'
    if (mod.startsWith('timers') || mod.startsWith('process/task_queues') || mod.startsWith('async_hooks')) return 'node: timers, microtasks'
    if (mod === 'events' || mod.startsWith('events')) return 'node: events'
    if (mod.startsWith('buffer') || mod === 'buffer' || mod.startsWith('util')) return 'node: buffer, util'
    return `node: ${mod.split('/')[0] ?? mod}`
  }
  const nm = url.lastIndexOf('node_modules/')
  if (nm !== -1) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/')
    const pkg = rest[0]?.startsWith('@') === true ? `${rest[0]}/${rest[1] ?? ''}` : rest[0] ?? ''
    return pkg
  }
  const dist = url.indexOf('/dist/')
  if (dist !== -1) return 'gateway: ' + url.slice(dist + 6).replace(/\.js$/, '')
  return url
}

function key (f: CallFrame): string {
  const file = f.url === '' ? '' : ` ${f.url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, '$1/')}:${f.lineNumber + 1}`
  return `${f.functionName === '' ? '(anonymous)' : f.functionName}${file}`
}

export function summarizeProfile (file: string): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const byId = new Map<number, ProfileNode>()
  for (const n of profile.nodes) byId.set(n.id, n)
  const self = new Map<number, number>()
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
  }
  const totalUs = [...self.values()].reduce((a, b) => a + b, 0)
  const idleUs = [...byId.values()].filter(n => n.callFrame.functionName === '(idle)').reduce((a, n) => a + (self.get(n.id) ?? 0), 0)
  const busyUs = totalUs - idleUs

  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const NATIVE = '(native: V8 builtins, C++ bindings)'
  const layerOf = (id: number): string => {
    const leaf = (byId.get(id) as ProfileNode).callFrame
    if (leaf.url === '' && (leaf.functionName === 'writev' || leaf.functionName === 'writeUtf8String' || leaf.functionName === 'writeBuffer')) return 'kernel: socket writes'
    if (leaf.url === '' && leaf.functionName.startsWith('(')) return leaf.functionName
    let firstNode: string | undefined
    let at: number | undefined = id
    while (at !== undefined) {
      const f = (byId.get(at) as ProfileNode).callFrame
      const a = area(f)
      if (f.url !== '' && !f.url.startsWith('node:')) return a
      if (firstNode === undefined && a !== NATIVE && a !== '(root)') firstNode = a
      at = parent.get(at)
    }
    return firstNode ?? NATIVE
  }
  const areas = new Map<string, number>()
  const callerAreas = new Map<string, number>()
  const functions = new Map<string, number>()
  for (const [id, us] of self) {
    const f = (byId.get(id) as ProfileNode).callFrame
    if (f.functionName === '(idle)') continue
    areas.set(area(f), (areas.get(area(f)) ?? 0) + us)
    const ca = layerOf(id)
    callerAreas.set(ca, (callerAreas.get(ca) ?? 0) + us)
    functions.set(key(f), (functions.get(key(f)) ?? 0) + us)
  }

  // Inclusive time of the key frames, counted once per stack even when a frame recurses.
  const inclusive = new Map<string, number>()
  const totals = new Map<number, number>()
  const totalOf = (id: number): number => {
    const cached = totals.get(id)
    if (cached !== undefined) return cached
    const n = byId.get(id) as ProfileNode
    let t = self.get(id) ?? 0
    for (const c of n.children ?? []) t += totalOf(c)
    totals.set(id, t)
    return t
  }
  const root = profile.nodes[0] as ProfileNode
  const stack: Array<{ id: number, active: Set<string> }> = [{ id: root.id, active: new Set() }]
  while (stack.length > 0) {
    const { id, active } = stack.pop() as { id: number, active: Set<string> }
    const n = byId.get(id) as ProfileNode
    let here = active
    for (const [label, test] of KEY_FRAMES) {
      if (!active.has(label) && test(n.callFrame)) {
        if (here === active) here = new Set(active)
        here.add(label)
        inclusive.set(label, (inclusive.get(label) ?? 0) + totalOf(id))
      }
    }
    for (const c of n.children ?? []) stack.push({ id: c, active: here })
  }

  const shares = (m: Map<string, number>, limit: number, ordered = false): Share[] => {
    const entries = ordered ? [...m] : [...m].sort((a, b) => b[1] - a[1])
    return entries.slice(0, limit).map(([name, us]) => ({ name, ms: Math.round(us / 1000), pct: Math.round(us / busyUs * 1000) / 10 }))
  }
  const orderedInclusive = new Map(KEY_FRAMES.map(([label]) => [label, inclusive.get(label) ?? 0] as [string, number]))
  return {
    totalMs: Math.round(totalUs / 1000),
    busyPct: Math.round(busyUs / totalUs * 1000) / 10,
    byArea: shares(areas, 25),
    byLayer: shares(callerAreas, 30),
    byFunction: shares(functions, 30),
    inclusive: shares(orderedInclusive, KEY_FRAMES.length, true)
  }
}

/**
 * The summary as tables; with `calls` (the calls the process served while it was profiled), each
 * row also says what it cost per call, in µs (start-up and logins are spread over the calls too).
 */
export function profileTable (s: ProfileSummary, calls?: number): string {
  const perCall = calls === undefined || calls <= 0 ? undefined : (ms: number): number => Math.round(ms * 1000 / calls * 10) / 10
  const head = (label: string): string[] => perCall === undefined ? [label, 'ms', '%'] : [label, 'ms', '%', 'µs/call']
  const row = (a: Share): Array<string | number> => perCall === undefined ? [a.name, a.ms, a.pct] : [a.name, a.ms, a.pct, perCall(a.ms)]
  const busyMs = s.totalMs * s.busyPct / 100
  return [
    `sampled ${s.totalMs} ms, busy ${s.busyPct}% (percentages below are of busy time)` +
      (perCall === undefined ? '' : `; ${calls ?? 0} calls, ${perCall(busyMs)} µs busy per call`),
    '',
    table(head('self time by area'), s.byArea.map(row)),
    '',
    table(head('self time by layer (natives and Node internals charged to the package or file that called them)'), s.byLayer.map(row)),
    '',
    table(head('inclusive time of hot-path frames'), s.inclusive.map(row)),
    '',
    table(head('self time by function'), s.byFunction.map(row))
  ].join('\n')
}

// `node dist/bench/lib/profile.js FILE.cpuprofile`: the same summary for any profile.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = process.argv[2]
  if (file === undefined) {
    process.stderr.write('usage: node dist/bench/lib/profile.js FILE.cpuprofile\n')
    process.exit(2)
  }
  process.stdout.write(profileTable(summarizeProfile(file)) + '\n')
}
