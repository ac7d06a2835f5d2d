/**
 * A fixed-capacity buffer of the newest items, numbered by a caller-provided, strictly increasing
 * sequence. O(1) push, O(k) read of the items after a given sequence.
 */
export class RingBuffer<T extends { seq: number }> {
  private readonly items: Array<T | undefined>
  private start = 0
  private count = 0

  constructor (readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer')
    this.items = new Array<T | undefined>(capacity)
  }

  get size (): number {
    return this.count
  }

  /** The oldest sequence still held, or undefined when empty. */
  get firstSeq (): number | undefined {
    return this.count === 0 ? undefined : this.items[this.start]?.seq
  }

  get lastSeq (): number | undefined {
    return this.count === 0 ? undefined : this.items[(this.start + this.count - 1) % this.capacity]?.seq
  }

  push (item: T): void {
    if (this.count < this.capacity) {
      this.items[(this.start + this.count) % this.capacity] = item
      this.count++
    } else {
      this.items[this.start] = item
      this.start = (this.start + 1) % this.capacity
    }
  }

  /** Items with a sequence larger than `seq`, oldest first. */
  after (seq: number): T[] {
    const first = this.firstSeq
    if (first === undefined) return []
    // Sequences are consecutive in practice; fall back to a scan if they are not.
    let skip = Math.max(0, Math.min(this.count, seq - first + 1))
    const guess = this.items[(this.start + skip) % this.capacity]
    if (skip < this.count && guess !== undefined && guess.seq <= seq) skip = 0
    const out: T[] = []
    for (let i = skip; i < this.count; i++) {
      const item = this.items[(this.start + i) % this.capacity] as T
      if (item.seq > seq) out.push(item)
    }
    return out
  }
}
