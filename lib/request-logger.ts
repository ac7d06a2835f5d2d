// The logger of one request, made only when the request logs something. Fastify gives every request
// a pino child (`logger.child({ reqId })`), and the session hook adds the user (`setBindings`): two
// pino calls per request that build bindings JSON, on the hot path of every call, although at the
// usual levels (warn in production, see docs/OPERATIONS.md) a successful call never logs. This
// stands in for the child: it answers the level-checked methods itself when the level is off, and
// makes the real child, with every binding it was given, the first time a line is written or
// anything else is asked of it. A line is exactly what the pino child would have written.

/** What a pino logger offers that requests use (Fastify's, the routes', the plugins'). */
export interface PinoLike {
  level: string
  readonly levels: { values: Record<string, number> }
  child: (bindings: Record<string, unknown>, opts?: Record<string, unknown>) => PinoLike
  bindings: () => Record<string, unknown>
  setBindings?: (bindings: Record<string, unknown>) => void
  isLevelEnabled?: (level: string) => boolean
  flush?: (cb?: (err?: Error) => void) => void
  [method: string]: unknown
}

type LogMethod = (...args: unknown[]) => void

const METHODS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const

export class RequestLogger {
  private real: PinoLike | undefined
  private readonly pending: Record<string, unknown>

  constructor (
    private readonly parent: PinoLike,
    bindings: Record<string, unknown>,
    private readonly opts: Record<string, unknown>
  ) {
    this.pending = { ...bindings }
  }

  /** The pino child, made on first need with every binding so far. */
  get logger (): PinoLike {
    this.real ??= this.parent.child(this.pending, this.opts)
    return this.real
  }

  /** Whether the child was made (for tests). */
  get materialized (): boolean {
    return this.real !== undefined
  }

  get level (): string {
    return this.real?.level ?? (typeof this.opts.level === 'string' ? this.opts.level : this.parent.level)
  }

  set level (level: string) {
    this.logger.level = level
  }

  get levels (): PinoLike['levels'] {
    return this.parent.levels
  }

  isLevelEnabled (level: string): boolean {
    const values = this.parent.levels.values
    const wanted = values[level]
    const threshold = values[this.level]
    return wanted !== undefined && threshold !== undefined && wanted >= threshold
  }

  setBindings (bindings: Record<string, unknown>): void {
    if (this.real === undefined) Object.assign(this.pending, bindings)
    else this.real.setBindings?.(bindings)
  }

  bindings (): Record<string, unknown> {
    return this.logger.bindings()
  }

  child (bindings: Record<string, unknown>, opts?: Record<string, unknown>): PinoLike {
    return this.logger.child(bindings, opts)
  }

  flush (cb?: (err?: Error) => void): void {
    const target = this.real ?? this.parent
    if (target.flush !== undefined) target.flush(cb)
    else cb?.()
  }

  declare fatal: LogMethod
  declare error: LogMethod
  declare warn: LogMethod
  declare info: LogMethod
  declare debug: LogMethod
  declare trace: LogMethod
  declare silent: LogMethod
}

for (const method of METHODS) {
  Object.defineProperty(RequestLogger.prototype, method, {
    value: function (this: RequestLogger, ...args: unknown[]): void {
      if (!this.isLevelEnabled(method)) return
      const logger = this.logger;
      (logger[method] as LogMethod).apply(logger, args)
    },
    writable: true,
    configurable: true
  })
}
Object.defineProperty(RequestLogger.prototype, 'silent', { value: function (): void {}, writable: true, configurable: true })
