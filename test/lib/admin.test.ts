import { test } from 'tap'
import { Operator, bearerChecker, OPERATOR_ACTIONS, type OperatorAction } from '../../lib/admin.js'
import type { EndReason, Session } from '../../lib/sessions.js'

const TOKEN = 'Zm9vYmFyYmF6cXV4cXV1eA=='

test('the bearer check: only the exact token, with the Bearer scheme in any case', async (t) => {
  const check = bearerChecker(TOKEN)
  t.equal(check(`Bearer ${TOKEN}`), 'ok')
  t.equal(check(`bearer ${TOKEN}`), 'ok')
  t.equal(check(`BEARER  ${TOKEN} `), 'ok', 'extra spaces around the token')
  t.equal(check(undefined), 'missing')
  t.equal(check(''), 'missing')
  t.equal(check('Bearer'), 'missing')
  t.equal(check('Bearer '), 'missing')
  t.equal(check(TOKEN), 'missing', 'no scheme')
  t.equal(check(`Basic ${TOKEN}`), 'missing', 'another scheme')
  t.equal(check(`Bearer ${TOKEN} extra`), 'missing', 'two words')
  t.equal(check(`Bearer ${TOKEN}x`), 'wrong', 'longer')
  t.equal(check(`Bearer ${TOKEN.slice(0, -1)}`), 'wrong', 'shorter')
  t.equal(check(`Bearer ${TOKEN.toLowerCase()}`), 'wrong', 'the token is case-sensitive')
  t.equal(check(`Bearer ${'x'.repeat(10_000)}`), 'wrong', 'any length is hashed, never compared byte by byte')
})

/** A store with sessions that only need what the operator reads. */
function fakeStore (users: string[]): { store: ConstructorParameters<typeof Operator>[0], ended: Array<[string, EndReason]> } {
  const ended: Array<[string, EndReason]> = []
  const sessions = users.map((user, i) => ({ id: `cookie-${i}`, handle: `handle-${i}`, user, createdAt: 0, lastActivityAt: 1000, calls: i, websockets: 0, ended: undefined, upstream: { pending: 2 * i } }) as unknown as Session)
  const open = new Set(sessions)
  return {
    ended,
    store: {
      all: () => open.values(),
      byHandle: (handle: string) => [...open].find(s => s.handle === handle),
      logout: async (s: Session, reason: EndReason = 'logout') => { open.delete(s); ended.push([s.user, reason]) },
      revokeUser: async (user: string) => {
        const theirs = [...open].filter(s => s.user === user)
        for (const s of theirs) { open.delete(s); ended.push([s.user, 'revoked']) }
        return theirs.length
      }
    }
  }
}

test('the operator: views without cookies, ending as revoked, the drain switch, one event per action', async (t) => {
  const { store, ended } = fakeStore(['alice', 'bob', 'alice'])
  const operator = new Operator(store)
  const actions: OperatorAction[] = []
  operator.on('action', (a) => { actions.push(a) })

  const views = operator.sessions()
  t.strictSame(views[1], { id: 'handle-1', user: 'bob', createdAt: '1970-01-01T00:00:00.000Z', lastActivityAt: '1970-01-01T00:00:01.000Z', calls: 1, queued: 2, websockets: 0 })
  t.notMatch(JSON.stringify(views), /cookie-/, 'no cookie in the views')

  t.equal(await operator.endSession('nope'), undefined, 'an unknown handle ends nothing')
  t.match(await operator.endSession('handle-1'), { id: 'handle-1', user: 'bob' })
  t.strictSame(ended, [['bob', 'revoked']], 'ended as revoked')
  t.equal(await operator.endUser('alice'), 2)
  t.equal(await operator.endUser('alice'), 0)

  t.equal(operator.draining, false)
  t.equal(operator.setDraining(true), true, 'changed')
  t.equal(operator.setDraining(true), false, 'idempotent')
  t.equal(operator.draining, true)
  t.equal(operator.setDraining(false), true)
  t.equal(operator.draining, false)
  t.strictSame(actions, ['list_sessions', 'end_session', 'end_user', 'end_user', 'drain', 'drain', 'undrain'])
  t.ok(actions.every(a => OPERATOR_ACTIONS.includes(a)), 'every action is a label of the metric')
})
