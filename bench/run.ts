// `npm run bench`: every benchmark, one after the other (never at once: they share 2 cores), each in
// its own process. Their tables pass through; the last line is one JSON object holding each one's
// machine-readable result. Options (--duration, …) are passed to every benchmark.
//
//   node dist/bench/run.js [--only rpc,codec] [options of the benchmarks]
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { option, printResult } from './lib/common.js'

const ALL = ['rpc', 'sessions', 'codec', 'alarms']

function runOne (name: string, args: string[]): Promise<{ code: number, last: string }> {
  return new Promise((resolve) => {
    const script = fileURLToPath(new URL(`./${name}.js`, import.meta.url))
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    let last = ''
    let pending = ''
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => {
      pending += chunk
      const lines = pending.split('\n')
      pending = lines.pop() ?? ''
      for (const line of lines) {
        if (line.startsWith('{')) last = line
        else process.stdout.write(line + '\n')
      }
    })
    child.on('close', (code) => {
      if (pending.startsWith('{')) last = pending
      resolve({ code: code ?? 1, last })
    })
  })
}

async function main (): Promise<void> {
  const only = option('only', 'BENCH_ONLY', ALL.join(',')).split(',').filter(n => ALL.includes(n))
  const args = process.argv.slice(2).filter((a, i, all) => a !== '--only' && !a.startsWith('--only=') && all[i - 1] !== '--only')
  const results: Record<string, unknown> = {}
  let failed = 0
  for (const name of only) {
    process.stdout.write(`\n=== bench/${name} ===\n`)
    const { code, last } = await runOne(name, args)
    if (code !== 0 || last === '') {
      failed++
      results[name] = { failed: true, exitCode: code }
      continue
    }
    results[name] = JSON.parse(last) as unknown
  }
  printResult('all', { results })
  if (failed > 0) process.exitCode = 1
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/run: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
