/**
 * What the legacy server says of itself (system.listMethods, system.methodSignature,
 * system.methodHelp), and how a batch of calls travels (system.multicall or one by one).
 *
 * The catalogue is asked for on a caller's pinned socket, once for the whole gateway: concurrent
 * askers share one fill, a filled catalogue is kept for `ttlMs`, and a fill is bounded in time
 * (`fillMs`: details that did not come in time are null) and in size (`maxMethods`).
 */
import { RpcFault } from './errors.js'
import type { JsonValue } from './xmlrpc.js'

export interface MethodInfo {
  name: string
  /** [[return type, param types…], …] as the server gives them; null where it gives none. */
  signatures: string[][] | null
  help: string | null
}

export interface Catalogue {
  /** false: the server does not describe itself (system.listMethods faulted). */
  introspection: boolean
  methods: MethodInfo[]
  /** The server lists system.multicall. */
  multicall: boolean
}

/** One call on the asker's pinned socket; throws the contract's errors (RpcFault for a fault). */
export type Caller = (method: string, params: JsonValue[]) => Promise<JsonValue>

export interface DiscoveryOptions {
  /** LEGACY_MULTICALL: `auto` learns from the catalogue (and from batches, which set `multicall`). */
  multicall: 'auto' | 'true' | 'false'
  ttlMs: number
  fillMs: number
  maxMethods: number
  /** Details fetched per system.multicall request. */
  chunk?: number
}

const NO_INTROSPECTION: Catalogue = Object.freeze({ introspection: false, methods: [], multicall: false }) as Catalogue

export class Discovery {
  /**
   * Whether batches travel as one system.multicall: forced by LEGACY_MULTICALL, or in auto mode
   * what was learned (from the catalogue, or a batch's first attempt); undefined until then.
   */
  multicall: boolean | undefined
  private cached: { catalogue: Catalogue, until: number } | undefined
  private filling: Promise<Catalogue> | undefined
  private readonly opts: Required<DiscoveryOptions>

  constructor (opts: DiscoveryOptions) {
    this.opts = { chunk: 100, ...opts }
    this.multicall = opts.multicall === 'auto' ? undefined : opts.multicall === 'true'
  }

  /** The catalogue if it is filled and fresh, without asking anyone. */
  peek (now = Date.now()): Catalogue | undefined {
    return this.cached !== undefined && this.cached.until > now ? this.cached.catalogue : undefined
  }

  /** The catalogue, filled on `call`'s socket if it is not fresh. One fill serves every asker. */
  async catalogue (call: Caller): Promise<Catalogue> {
    const fresh = this.peek()
    if (fresh !== undefined) return fresh
    this.filling ??= this.fill(call).then((catalogue) => {
      this.cached = { catalogue, until: Date.now() + this.opts.ttlMs }
      if (this.opts.multicall === 'auto' && catalogue.introspection) this.multicall = catalogue.multicall
      return catalogue
    }).finally(() => { this.filling = undefined })
    return await this.filling
  }

  /** Forgets the catalogue (the legacy server may have changed). */
  clear (): void {
    this.cached = undefined
  }

  private async fill (call: Caller): Promise<Catalogue> {
    const deadline = Date.now() + this.opts.fillMs
    let listed: JsonValue
    try {
      listed = await call('system.listMethods', [])
    } catch (err) {
      // A server without introspection answers a fault (method not found); anything else (the
      // socket, a timeout, a broken answer) is the asker's error, and nothing is kept.
      if (err instanceof RpcFault) return NO_INTROSPECTION
      throw err
    }
    if (!Array.isArray(listed)) return NO_INTROSPECTION
    const names = [...new Set(listed.filter((n): n is string => typeof n === 'string' && n !== ''))].slice(0, this.opts.maxMethods)
    const has = new Set(names)
    const multicall = has.has('system.multicall')
    const methods: MethodInfo[] = names.map(name => ({ name, signatures: null, help: null }))
    const wanted: Array<{ index: number, what: 'signatures' | 'help' }> = []
    for (let index = 0; index < methods.length; index++) {
      if (has.has('system.methodSignature')) wanted.push({ index, what: 'signatures' })
      if (has.has('system.methodHelp')) wanted.push({ index, what: 'help' })
    }
    const ask = (w: { index: number, what: 'signatures' | 'help' }): { methodName: string, params: JsonValue[] } =>
      ({ methodName: w.what === 'signatures' ? 'system.methodSignature' : 'system.methodHelp', params: [methods[w.index]?.name ?? ''] })
    const store = (w: { index: number, what: 'signatures' | 'help' }, value: JsonValue): void => {
      const method = methods[w.index]
      if (method === undefined) return
      if (w.what === 'signatures') method.signatures = signaturesOf(value)
      else method.help = typeof value === 'string' && value.trim() !== '' ? value : null
    }

    if (multicall) {
      for (let start = 0; start < wanted.length && Date.now() < deadline; start += this.opts.chunk) {
        const part = wanted.slice(start, start + this.opts.chunk)
        let answer: JsonValue
        try {
          answer = await call('system.multicall', [part.map(ask)])
        } catch (err) {
          if (err instanceof RpcFault) break // the details stay null; the list is still right
          throw err
        }
        if (!Array.isArray(answer) || answer.length !== part.length) break
        part.forEach((w, i) => {
          const item = answer[i]
          if (Array.isArray(item) && item.length === 1) store(w, item[0] as JsonValue)
        })
      }
    } else {
      for (const w of wanted) {
        if (Date.now() >= deadline) break
        try {
          const request = ask(w)
          store(w, await call(request.methodName, request.params))
        } catch (err) {
          if (!(err instanceof RpcFault)) throw err
        }
      }
    }
    return { introspection: true, methods, multicall }
  }
}

/** A methodSignature answer: an array of arrays of type names, or null ("undef", a string, anything else). */
function signaturesOf (value: JsonValue): string[][] | null {
  if (!Array.isArray(value) || value.length === 0) return null
  const out: string[][] = []
  for (const signature of value) {
    if (!Array.isArray(signature) || signature.length === 0 || !signature.every(t => typeof t === 'string')) return null
    out.push(signature as string[])
  }
  return out
}

/** One call of a batch, as it went to the legacy server. */
export interface BatchCall {
  method: string
  params: readonly unknown[]
}

/** One answer of a multicall: a value, or a fault. */
export type MulticallItem = { value: JsonValue } | { faultCode: number, faultString: string }

/** Why a multicall answer cannot be matched to the calls sent; the whole batch is then 502. */
export class MulticallShapeError extends Error {
  override name = 'MulticallShapeError'
}

/** The param of system.multicall for `calls`. */
export function multicallParams (calls: readonly BatchCall[]): JsonValue[] {
  return [calls.map(c => ({ methodName: c.method, params: c.params as JsonValue[] }))]
}

/**
 * A multicall answer, item by item: `[value]` or `{faultCode, faultString}`. Its length must be
 * that of the calls sent and every item one of the two shapes; otherwise nothing of it is used.
 */
export function multicallResults (answer: JsonValue, sent: number): MulticallItem[] {
  if (!Array.isArray(answer)) throw new MulticallShapeError('the system.multicall answer is not an array')
  if (answer.length !== sent) throw new MulticallShapeError(`the system.multicall answer has ${answer.length} results for ${sent} calls`)
  return answer.map((item, i) => {
    if (Array.isArray(item) && item.length === 1) return { value: item[0] as JsonValue }
    if (item !== null && typeof item === 'object' && !Array.isArray(item)) {
      const code = item.faultCode
      const text = item.faultString
      if (typeof code === 'number' && Number.isInteger(code)) return { faultCode: code, faultString: typeof text === 'string' ? text : '' }
    }
    throw new MulticallShapeError(`result ${i + 1} of the system.multicall answer is neither [value] nor a fault`)
  })
}
