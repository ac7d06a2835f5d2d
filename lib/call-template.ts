/**
 * The params of the calls the gateway makes itself (login, logout, heartbeat), written by the
 * operator as JSON templates (CONTRACT §2: LEGACY_LOGIN_PARAMS, LEGACY_LOGOUT_PARAMS,
 * LEGACY_HEARTBEAT_PARAMS).
 *
 * A string value that is exactly `{{username}}` or `{{password}}` is replaced by the browser's
 * value, and stays a string; everything else is sent as written, with the §3 request mapping
 * (`{"$dateTime": …}`, `{"$base64": …}` included). A placeholder inside a longer string is not one
 * (it is sent as written), so that no user name can ever change the shape of the call. Refused at
 * start: text that is not JSON, anything but an array, a placeholder in a key, a placeholder the
 * call cannot fill (the password outside the login), a placeholder inside `$dateTime`/`$base64`.
 */
import type { JsonValue } from './xmlrpc.js'

export type Placeholder = 'username' | 'password'

export interface CallValues {
  username: string
  password?: string
}

/** A template that cannot be used; `message` says why, without naming any value. */
export class CallTemplateError extends Error {
  override name = 'CallTemplateError'
}

const PLACEHOLDER = /^\{\{(username|password)\}\}$/
// A key holding something placeholder-like: keys are never replaced, so it is a mistake.
const IN_KEY = /\{\{\s*[A-Za-z_]\w*\s*\}\}/

// A filled template is a copy: the template itself is never handed out, so nothing can change it.
type Step = (values: CallValues) => JsonValue

export interface CallTemplate {
  /** The placeholders the template uses. */
  readonly uses: ReadonlySet<Placeholder>
  /** The params with the values put in. */
  fill (values: CallValues): JsonValue[]
}

/**
 * Parses and checks a template. `allowed` are the placeholders the call may use: the password is
 * known only at login (the gateway never keeps it), so a logout or heartbeat template naming it is
 * refused.
 */
export function parseCallTemplate (text: string, allowed: readonly Placeholder[]): CallTemplate {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new CallTemplateError(`must be JSON (${(err as Error).message})`)
  }
  if (!Array.isArray(parsed)) throw new CallTemplateError('must be a JSON array of params')
  const uses = new Set<Placeholder>()
  const steps = parsed.map((value: unknown, i) => compile(value, `[${i}]`, allowed, uses, false))
  return {
    uses,
    fill: (values) => steps.map(step => step(values))
  }
}

function compile (value: unknown, where: string, allowed: readonly Placeholder[], uses: Set<Placeholder>, inWrapper: boolean): Step {
  if (typeof value === 'string') {
    const match = PLACEHOLDER.exec(value)
    if (match !== null) {
      const name = match[1] as Placeholder
      if (!allowed.includes(name)) throw new CallTemplateError(`may not use {{${name}}} (at ${where}): only ${allowed.map(p => `{{${p}}}`).join(' and ')}`)
      if (inWrapper) throw new CallTemplateError(`may not put {{${name}}} inside {"$dateTime"} or {"$base64"} (at ${where}): the browser's value is a string`)
      uses.add(name)
      return name === 'username' ? (v) => v.username : (v) => v.password ?? ''
    }
    return () => value
  }
  if (value === null || typeof value === 'number' || typeof value === 'boolean') {
    return () => value
  }
  if (Array.isArray(value)) {
    const steps = value.map((v: unknown, i) => compile(v, `${where}[${i}]`, allowed, uses, inWrapper))
    return (v) => steps.map(step => step(v))
  }
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
    const wrapper = entries.length === 1 && (entries[0]?.[0] === '$dateTime' || entries[0]?.[0] === '$base64')
    const steps: Array<[string, Step]> = entries.map(([key, v]) => {
      if (IN_KEY.test(key)) throw new CallTemplateError(`has a placeholder in the key ${JSON.stringify(key)} at ${where}: only values are replaced`)
      return [key, compile(v, `${where}.${key}`, allowed, uses, inWrapper || wrapper)]
    })
    return (v) => {
      const out: Record<string, JsonValue> = {}
      // defineProperty: a "__proto__" member is a member like any other, not the object's prototype.
      for (const [key, step] of steps) Object.defineProperty(out, key, { value: step(v), enumerable: true, writable: true, configurable: true })
      return out
    }
  }
  /* c8 ignore next */
  throw new CallTemplateError(`has a value JSON cannot hold at ${where}`)
}
