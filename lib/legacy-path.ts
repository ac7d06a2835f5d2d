/**
 * The path `/api/xml/*` sends to the legacy server, decided once here so that what is forwarded
 * and what a path policy is matched against are the same string.
 *
 * The normalised path is RFC 3986's syntax-based normal form, stricter where servers disagree:
 * - percent-encoded unreserved characters are decoded (`%7E` → `~`, `%2e` → `.`), every other
 *   escape is kept with upper-case hex digits;
 * - dot segments are resolved (RFC 3986 §5.2.4: `..` never climbs above the root) and empty
 *   segments removed (`//` → `/`); a trailing slash is kept;
 * - printable ASCII that a path may not hold raw (`"`, `<`, `[`, `|`, …) is percent-encoded;
 * - refused (LegacyPathError): a backslash, a raw control or non-ASCII character, an invalid
 *   escape, and the escapes `%2F`, `%5C` and any control character (`%00`–`%1F`, `%7F`). Servers
 *   disagree on whether `%2F` or `\` separates segments (a classic way past path rules), and an
 *   encoded control character is a log or header injection waiting for a careless server.
 */

export class LegacyPathError extends Error {
  override name = 'LegacyPathError'
}

export interface LegacyTarget {
  /** The normalised path (always starts with `/`). */
  path: string
  /** The query as received: `''` or `?…`. */
  query: string
}

const HEX = '0123456789ABCDEF'

// Per ASCII code: 0 refused, 1 kept as is (pchar), 2 percent-encoded, 3 `%`, 4 `/`.
const CLASS = new Uint8Array(128)
for (let c = 0x21; c < 0x7f; c++) CLASS[c] = 2
for (const ch of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@") CLASS[ch.charCodeAt(0)] = 1
CLASS[0x25] = 3 // %
CLASS[0x2f] = 4 // /
CLASS[0x5c] = 0 // \

const UNRESERVED = new Uint8Array(128)
for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~') UNRESERVED[ch.charCodeAt(0)] = 1

// The common path (plain segments, none starting with a dot) is already normal.
const PLAIN = /^(?:\/[A-Za-z0-9\-_~!$&'()*+,;=:@][A-Za-z0-9\-._~!$&'()*+,;=:@]*)*\/?$/

function hexValue (c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  if (c >= 0x41 && c <= 0x46) return c - 0x37
  if (c >= 0x61 && c <= 0x66) return c - 0x57
  return -1
}

function describeChar (c: number): string {
  return c === 0x5c ? 'a backslash' : `the character U+${c.toString(16).toUpperCase().padStart(4, '0')}`
}

/**
 * Normalises a path (origin-form, starting with `/`, without its query). Throws LegacyPathError
 * saying what is wrong with it.
 */
export function normalizeLegacyPath (path: string): string {
  if (path.charCodeAt(0) !== 0x2f) throw new LegacyPathError('the path must start with /')
  if (PLAIN.test(path)) return path

  const segments: string[] = []
  let segment = ''
  const end = (): void => {
    if (segment === '..') segments.pop()
    else if (segment !== '.' && segment !== '') segments.push(segment)
  }
  for (let i = 1; i < path.length; i++) {
    const c = path.charCodeAt(i)
    const kind = c < 128 ? CLASS[c] : 0
    if (kind === 1) {
      segment += path[i]
    } else if (kind === 4) {
      end()
      segment = ''
    } else if (kind === 3) {
      const hi = hexValue(path.charCodeAt(i + 1))
      const lo = hexValue(path.charCodeAt(i + 2))
      if (hi < 0 || lo < 0) throw new LegacyPathError(`invalid percent escape ${JSON.stringify(path.slice(i, i + 3))}`)
      const byte = hi * 16 + lo
      if (byte === 0x2f || byte === 0x5c || byte < 0x20 || byte === 0x7f) {
        throw new LegacyPathError(`the escape %${HEX[hi]}${HEX[lo]} is not allowed in a path`)
      }
      segment += byte < 128 && UNRESERVED[byte] === 1 ? String.fromCharCode(byte) : `%${HEX[hi]}${HEX[lo]}`
      i += 2
    } else if (kind === 2) {
      segment += `%${HEX[c >> 4]}${HEX[c & 15]}`
    } else {
      throw new LegacyPathError(`${describeChar(c)} is not allowed in a path`)
    }
  }
  end()
  if (segments.length === 0) return '/'
  // RFC 3986 §5.2.4: a path ending in a slash, `.` or `..` names a directory.
  const directory = segment === '' || segment === '.' || segment === '..'
  return '/' + segments.join('/') + (directory ? '/' : '')
}

// A query is forwarded as received, but only if it can go on the wire as it is.
const QUERY = /^\?[\x21-\x7e]*$/

/**
 * Splits a request target into its path and query. Origin-form (`/a?b`) and absolute-form
 * (`http://host/a?b`, which RFC 9112 §3.2.2 says a server must accept) are taken; the authority of
 * an absolute-form target is dropped (the legacy origin is fixed).
 */
export function splitTarget (target: string): { path: string, query: string } {
  let start = 0
  if (target.charCodeAt(0) !== 0x2f) {
    const scheme = /^https?:\/\//i.exec(target)
    if (scheme === null) throw new LegacyPathError('the request target is neither a path nor an http(s) URL')
    start = scheme[0].length
    while (start < target.length && target[start] !== '/' && target[start] !== '?') start++
  }
  const queryAt = target.indexOf('?', start)
  const path = queryAt < 0 ? target.slice(start) : target.slice(start, queryAt)
  const query = queryAt < 0 ? '' : target.slice(queryAt)
  if (query !== '' && !QUERY.test(query)) throw new LegacyPathError('the query holds a space, control or non-ASCII character')
  return { path: path === '' ? '/' : path, query }
}

/** Decodes every `%XX` escape, byte for byte (as Latin-1 characters); invalid escapes stay. */
function percentDecode (text: string): string {
  return text.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
}

/**
 * The legacy path `/api/xml/*` forwards for a request target whose path starts with `prefix`
 * (`/api/xml`). The router has matched the prefix, possibly spelled with escapes (`/api/%78ml`):
 * its segments are skipped by count and checked by their decoded text.
 */
export function legacyTarget (target: string, prefix: string): LegacyTarget {
  const { path, query } = splitTarget(target)
  let at = 0
  for (let n = prefix.split('/').length - 1; n > 0 && at >= 0; n--) at = path.indexOf('/', at + 1)
  const head = at < 0 ? path : path.slice(0, at)
  if (percentDecode(head) !== prefix) throw new LegacyPathError(`the path is not under ${prefix}`)
  return { path: normalizeLegacyPath(at < 0 ? '/' : path.slice(at)), query }
}

// Servers that decode twice (or more) exist; past this many rounds nobody is left to decode.
const DECODE_ROUNDS = 3

/**
 * A spelling-blind key of a path, for refusing one legacy path however it is written: fully
 * percent-decoded (a few rounds), case-folded (IIS), cut at a NUL, split at `/` and `\`, each
 * segment without its `;params` (servlet containers; so `..;` is `..`) and without the trailing
 * dots and spaces Windows ignores, dot and empty segments resolved, no trailing slash. Two paths
 * with the same key may reach the same resource on some server; different keys reach different
 * ones on any server we know of.
 */
export function pathKey (path: string): string {
  let text = path
  for (let round = 0; round < DECODE_ROUNDS && text.includes('%'); round++) {
    const decoded = percentDecode(text)
    if (decoded === text) break
    text = decoded
  }
  const nul = text.indexOf('\0')
  if (nul >= 0) text = text.slice(0, nul)
  const segments: string[] = []
  for (const raw of text.toLowerCase().split(/[/\\]/)) {
    const semi = raw.indexOf(';')
    let segment = semi >= 0 ? raw.slice(0, semi) : raw
    const last = segment.charCodeAt(segment.length - 1)
    if (last === 0x2e || last === 0x20) {
      const trimmed = segment.replace(/ +$/, '')
      segment = trimmed === '.' || trimmed === '..' ? trimmed : trimmed.replace(/[. ]+$/, '')
    }
    if (segment === '..') segments.pop()
    else if (segment !== '' && segment !== '.') segments.push(segment)
  }
  return '/' + segments.join('/')
}
