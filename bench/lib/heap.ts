// Compares two V8 heap snapshots (.heapsnapshot) and says what the objects added between them are,
// per unit (per session): count and bytes of each kind of node, largest first.
import { readFileSync } from 'node:fs'
import { table } from './common.js'

interface Snapshot {
  snapshot: { meta: { node_fields: string[], node_types: [string[], ...unknown[]] } }
  nodes: number[]
  strings: string[]
}

export interface HeapShare { kind: string, countPerUnit: number, bytesPerUnit: number }

function tally (file: string): Map<string, { count: number, bytes: number }> {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot
  const fields = snap.snapshot.meta.node_fields
  const types = snap.snapshot.meta.node_types[0]
  const width = fields.length
  const typeAt = fields.indexOf('type')
  const nameAt = fields.indexOf('name')
  const sizeAt = fields.indexOf('self_size')
  const out = new Map<string, { count: number, bytes: number }>()
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt] as number] ?? '?'
    let name = snap.strings[snap.nodes[i + nameAt] as number] ?? ''
    // Strings, code and closures are named by their content or source: group them by type only.
    if (type === 'string' || type === 'concatenated string' || type === 'sliced string' || type === 'code' || type === 'number') name = ''
    if (type === 'closure') name = `closure ${name}`
    const kind = `${type}${name === '' ? '' : ': ' + name.slice(0, 60)}`
    const t = out.get(kind) ?? { count: 0, bytes: 0 }
    t.count++
    t.bytes += snap.nodes[i + sizeAt] as number
    out.set(kind, t)
  }
  return out
}

export function heapGrowth (before: string, after: string, units: number, limit = 25): HeapShare[] {
  const a = tally(before)
  const b = tally(after)
  const rows: HeapShare[] = []
  for (const [kind, t] of b) {
    const s = a.get(kind) ?? { count: 0, bytes: 0 }
    const bytes = (t.bytes - s.bytes) / units
    if (bytes > 0) rows.push({ kind, countPerUnit: Math.round((t.count - s.count) / units * 100) / 100, bytesPerUnit: Math.round(bytes) })
  }
  return rows.sort((x, y) => y.bytesPerUnit - x.bytesPerUnit).slice(0, limit)
}

export function heapTable (rows: HeapShare[]): string {
  const total = rows.reduce((s, r) => s + r.bytesPerUnit, 0)
  return table(['heap growth per session, by node kind', 'count', 'bytes'], [...rows.map(r => [r.kind, r.countPerUnit, r.bytesPerUnit] as Array<string | number>), ['(these rows)', '', total]])
}
