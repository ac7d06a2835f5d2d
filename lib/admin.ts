/**
 * The operator's side of the gateway (CONTRACT §6), framework-free: the drain switch, the list of
 * open sessions as operators see them, ending sessions, and the bearer-token check. The operator
 * API's listener and routes (plugins/admin.ts, routes/admin.ts) are thin glue around it; the
 * login route and /readyz read `draining`; plugins/metrics.ts counts its events.
 */
import { EventEmitter } from 'node:events'
import { createHash, timingSafeEqual } from 'node:crypto'
import type { Session, SessionStore } from './sessions.js'

/** What an operator did: the `action` label of legacy_gateway_operator_actions_total. */
export type OperatorAction = 'list_sessions' | 'end_session' | 'end_user' | 'drain' | 'undrain'
export const OPERATOR_ACTIONS: readonly OperatorAction[] = ['list_sessions', 'end_session', 'end_user', 'drain', 'undrain']

/** One open session as GET /admin/sessions shows it: never its cookie. */
export interface SessionView {
  id: string
  user: string
  createdAt: string
  lastActivityAt: string
  calls: number
  queued: number
  websockets: number
}

export interface OperatorEvents {
  action: [action: OperatorAction]
  /** A request to the operator API without the right bearer token. */
  refused: []
}

export function viewOf (session: Session): SessionView {
  return {
    id: session.handle,
    user: session.user,
    createdAt: new Date(session.createdAt).toISOString(),
    lastActivityAt: new Date(session.lastActivityAt).toISOString(),
    calls: session.calls,
    queued: session.upstream.pending,
    websockets: session.websockets
  }
}

export class Operator extends EventEmitter<OperatorEvents> {
  private drained = false

  constructor (private readonly store: Pick<SessionStore, 'all' | 'byHandle' | 'logout' | 'revokeUser'>) {
    super()
  }

  /** While true, new logins are refused (503 DRAINING) and /readyz says `draining`. */
  get draining (): boolean {
    return this.drained
  }

  sessions (): SessionView[] {
    this.emit('action', 'list_sessions')
    return [...this.store.all()].map(viewOf)
  }

  /**
   * Ends the session with this handle (legacy logout, socket closed, WebSocket `revoked`; its
   * cookie then gets SESSION_LOST) and settles once its logout is done. Undefined when no open
   * session has the handle.
   */
  async endSession (handle: string): Promise<SessionView | undefined> {
    const session = this.store.byHandle(handle)
    if (session === undefined) return undefined
    this.emit('action', 'end_session')
    const view = viewOf(session)
    await this.store.logout(session, 'revoked')
    return view
  }

  /** Ends every open session of `user`, likewise; resolves to how many. */
  async endUser (user: string): Promise<number> {
    this.emit('action', 'end_user')
    return await this.store.revokeUser(user)
  }

  /** Starts (true) or stops (false) draining; resolves to whether that changed anything. */
  setDraining (on: boolean): boolean {
    this.emit('action', on ? 'drain' : 'undrain')
    const changed = this.drained !== on
    this.drained = on
    return changed
  }

  refused (): void {
    this.emit('refused')
  }
}

export type TokenCheck = 'ok' | 'missing' | 'wrong'

const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest()

/**
 * Checks `Authorization: Bearer <token>` against the operator token in constant time: both sides
 * are hashed first, so neither the comparison nor its length check says how much of a guess was
 * right.
 */
export function bearerChecker (token: string): (authorization: string | undefined) => TokenCheck {
  const expected = digest(token)
  return (authorization) => {
    if (authorization === undefined) return 'missing'
    // RFC 7235: the scheme is case-insensitive; RFC 6750 §2.1: one space, then the token.
    const match = /^bearer +(\S+) *$/i.exec(authorization)
    if (match?.[1] === undefined) return 'missing'
    return timingSafeEqual(digest(match[1]), expected) ? 'ok' : 'wrong'
  }
}
