/**
 * A small seeded PRNG (mulberry32) so that a chaos run can be replayed: the same seed gives every
 * actor the same sequence of choices. Each actor forks its own stream by name, so one actor's
 * choices do not depend on how the others interleave.
 */
export class Random {
  private state: number

  constructor (readonly seed: number) {
    this.state = seed >>> 0
  }

  /** Uniform in [0, 1). */
  next (): number {
    this.state = (this.state + 0x6D2B79F5) >>> 0
    let x = this.state
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }

  /** An integer in [min, max], both included. */
  int (min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1))
  }

  chance (p: number): boolean {
    return this.next() < p
  }

  pick<T> (items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list')
    return items[Math.floor(this.next() * items.length)] as T
  }

  /** Picks a key with probability proportional to its weight. */
  weighted<K extends string> (weights: Readonly<Record<K, number>>): K {
    const entries = Object.entries(weights) as Array<[K, number]>
    const total = entries.reduce((sum, [, w]) => sum + w, 0)
    let r = this.next() * total
    for (const [key, w] of entries) {
      r -= w
      if (r < 0) return key
    }
    return (entries.at(-1) as [K, number])[0]
  }

  shuffle<T> (items: readonly T[]): T[] {
    const out = [...items]
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1))
      const tmp = out[i] as T
      out[i] = out[j] as T
      out[j] = tmp
    }
    return out
  }

  /** Text of the given length from an alphabet that includes XML-special and non-ASCII characters. */
  text (length: number): string {
    const alphabet = 'abcXYZ019 _-<>&"\'压力阀门é'
    let s = ''
    for (let i = 0; i < length; i++) s += alphabet[Math.floor(this.next() * alphabet.length)]
    return s
  }

  /** An independent stream for one actor, derived from this seed and the actor's name. */
  fork (name: string): Random {
    let h = 2166136261 ^ this.seed
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619)
    return new Random(h >>> 0)
  }
}

/** CHAOS_SEED if set (decimal), else the fixed default: the run is the same unless asked otherwise. */
export function seedFromEnv (fallback: number): number {
  const raw = process.env.CHAOS_SEED
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 0 || n > 0xFFFFFFFF) throw new RangeError(`CHAOS_SEED must be an integer in 0..4294967295 (got ${raw})`)
  return n
}
