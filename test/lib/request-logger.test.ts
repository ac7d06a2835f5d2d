import { test } from 'tap'
import pino from 'pino'
import { RequestLogger, type PinoLike } from '../../lib/request-logger.js'

function logger (level: string): { root: PinoLike, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const root = pino({ level, base: undefined, timestamp: false }, { write: (line: string) => { lines.push(JSON.parse(line) as Record<string, unknown>) } })
  return { root: root as unknown as PinoLike, lines }
}

test('writes what the pino child would have written, bindings set later included', async (t) => {
  const lazy = logger('info')
  const eager = logger('info')
  const r = new RequestLogger(lazy.root, { reqId: 'r1' }, {})
  r.setBindings({ user: 'alice' })
  r.info({ code: 'X' }, 'hello %s', 'there')
  const c = eager.root.child({ reqId: 'r1' }, {})
  c.setBindings?.({ user: 'alice' });
  (c.info as (...a: unknown[]) => void)({ code: 'X' }, 'hello %s', 'there')
  t.same(lazy.lines, eager.lines)
  t.same(lazy.lines[0], { level: 30, reqId: 'r1', user: 'alice', code: 'X', msg: 'hello there' })
  // Bindings after the child exists go to it.
  r.setBindings({ user: 'bob' })
  r.warn('again')
  t.equal(lazy.lines[1]?.user, 'bob')
})

test('makes no pino child while nothing is written at its level', async (t) => {
  const { root, lines } = logger('warn')
  const r = new RequestLogger(root, { reqId: 'r2' }, {})
  r.setBindings({ user: 'alice' })
  r.info('not at warn')
  r.debug('nor this')
  t.equal(r.materialized, false, 'no child for lines below the level')
  t.equal(r.level, 'warn')
  t.equal(r.isLevelEnabled('error'), true)
  r.error('written')
  t.equal(r.materialized, true)
  t.same(lines, [{ level: 50, reqId: 'r2', user: 'alice', msg: 'written' }])
})

test('a route level (the child\'s own) decides, and silent writes nothing', async (t) => {
  const { root, lines } = logger('info')
  const quiet = new RequestLogger(root, { reqId: 'r3' }, { level: 'warn' })
  quiet.info('dropped')
  t.equal(quiet.materialized, false)
  quiet.warn('kept')
  const silent = new RequestLogger(root, { reqId: 'r4' }, { level: 'silent' })
  silent.fatal('dropped')
  silent.silent('dropped')
  t.same(lines.map(l => l.msg), ['kept'])
  t.equal(quiet.child({ sub: 1 }).bindings().sub, 1, 'child() goes through the real child')
  t.same(quiet.bindings(), { reqId: 'r3' })
})
