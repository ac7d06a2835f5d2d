/**
 * The method and path policy (CONTRACT §2: RPC_ALLOW/RPC_DENY, XML_ALLOW/XML_DENY): which legacy
 * methods and XML paths a browser may reach. Compiled once at start into one regular expression
 * per list; a call costs one or two `test`s.
 *
 * A pattern is matched against the whole name; `*` matches any run of characters (none included,
 * `/` included) and every other character only itself. A name passes when the allow list matches
 * it and the deny list does not: deny beats allow.
 *
 * The two lists are matched differently on purpose, so that a spelling can only ever narrow what
 * passes:
 * - allow: exactly as written (XML-RPC method names and URL paths are case-sensitive), so an
 *   allowed `device.get` does not allow `DEVICE.GET`;
 * - deny: also case-blind, and for paths against every spelling a legacy server might read as the
 *   same path (lib/legacy-path.ts `pathKey`: decoded, case-folded, `;params` and trailing dots
 *   removed), so that `Device.Reboot` or `/Admin;x/%61` cannot slip past a deny entry on a server
 *   that matches loosely.
 */
import { pathKey } from './legacy-path.js'

/** A list variable that cannot be used; `message` says why. */
export class PolicyError extends Error {
  override name = 'PolicyError'
}

export interface Policy {
  /** Whether a browser may reach `name` (a method name, or a normalised path). */
  allows (name: string): boolean
  /** The patterns, as configured (for the docs, logs and /api/methods). */
  readonly allow: readonly string[]
  readonly deny: readonly string[]
}

/** Splits a comma-separated list, trimming entries and dropping empty ones. */
export function parsePatterns (value: string | undefined): string[] {
  return (value ?? '').split(',').map(p => p.trim()).filter(p => p !== '')
}

/** One RegExp for a list of patterns; null for an empty list (which matches nothing). */
export function compilePatterns (patterns: readonly string[], flags = ''): RegExp | null {
  if (patterns.length === 0) return null
  const alternatives = patterns.map(p => p.split('*').map(escapeRegExp).join('[\\s\\S]*'))
  return new RegExp(`^(?:${alternatives.join('|')})$`, flags)
}

function escapeRegExp (text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&')
}

const METHOD_PATTERN = /^[A-Za-z0-9_.:/*-]{1,256}$/

/** RPC_ALLOW / RPC_DENY. Patterns use the method name's characters and `*`. */
export function methodPolicy (allowList: string | undefined, denyList: string | undefined): Policy {
  const allow = parsePatterns(allowList ?? '*')
  const deny = parsePatterns(denyList)
  checkPatterns('RPC_ALLOW', allow, METHOD_PATTERN, 'a method name with * (letters, digits, _ . : / -)')
  checkPatterns('RPC_DENY', deny, METHOD_PATTERN, 'a method name with * (letters, digits, _ . : / -)')
  const allowRe = compilePatterns(allow)
  const denyRe = compilePatterns(deny, 'i')
  return {
    allow,
    deny,
    allows: (method) => allowRe !== null && allowRe.test(method) && !(denyRe?.test(method) ?? false)
  }
}

// A path pattern: starts with / or *; printable ASCII but for the characters a normalised path
// never holds raw, so that a pattern never silently matches nothing.
const PATH_PATTERN = /^[/*][!$&'()*+,;=:@A-Za-z0-9._~%/-]{0,1023}$/

/**
 * XML_ALLOW / XML_DENY, matched against the normalised path after `/api/xml`
 * (lib/legacy-path.ts `normalizeLegacyPath`). The deny list also sees `pathKey` of the path.
 */
export function pathPolicy (allowList: string | undefined, denyList: string | undefined): Policy {
  const allow = parsePatterns(allowList ?? '/*')
  const deny = parsePatterns(denyList)
  checkPatterns('XML_ALLOW', allow, PATH_PATTERN, 'a path starting with / (or *), with *')
  checkPatterns('XML_DENY', deny, PATH_PATTERN, 'a path starting with / (or *), with *')
  const allowRe = compilePatterns(allow)
  const denyRe = compilePatterns(deny, 'i')
  return {
    allow,
    deny,
    allows: (path) => {
      if (allowRe === null || !allowRe.test(path)) return false
      if (denyRe === null) return true
      if (denyRe.test(path)) return false
      // The key has no trailing slash: `/admin/*` must still refuse what a server reads as `/admin/`.
      const key = pathKey(path)
      return !denyRe.test(key) && !denyRe.test(key + '/')
    }
  }
}

function checkPatterns (variable: string, patterns: readonly string[], shape: RegExp, what: string): void {
  for (const pattern of patterns) {
    if (!shape.test(pattern)) throw new PolicyError(`${variable} has ${JSON.stringify(pattern)}, which is not a pattern (${what})`)
  }
}
