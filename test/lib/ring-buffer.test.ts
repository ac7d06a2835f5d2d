import { test } from 'tap'
import { RingBuffer } from '../../lib/ring-buffer.js'

const item = (seq: number) => ({ seq })

test('keeps the newest items in order', async (t) => {
  const rb = new RingBuffer<{ seq: number }>(3)
  t.equal(rb.firstSeq, undefined)
  t.same(rb.after(0), [])
  for (let i = 1; i <= 5; i++) rb.push(item(i))
  t.equal(rb.size, 3)
  t.equal(rb.firstSeq, 3)
  t.equal(rb.lastSeq, 5)
  t.same(rb.after(0).map(i => i.seq), [3, 4, 5])
  t.same(rb.after(3).map(i => i.seq), [4, 5])
  t.same(rb.after(4).map(i => i.seq), [5])
  t.same(rb.after(5), [])
  t.same(rb.after(99), [])
})

test('wraps many times', async (t) => {
  const rb = new RingBuffer<{ seq: number }>(7)
  for (let i = 1; i <= 1000; i++) rb.push(item(i))
  t.same(rb.after(990).map(i => i.seq), [994, 995, 996, 997, 998, 999, 1000])
  t.same(rb.after(996).map(i => i.seq), [997, 998, 999, 1000])
})

test('capacity must be positive', async (t) => {
  t.throws(() => new RingBuffer(0), RangeError)
  t.throws(() => new RingBuffer(1.5), RangeError)
})
