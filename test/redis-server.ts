import { spawn, type ChildProcess } from 'node:child_process'
import type { Test } from 'tap'
import { freePort } from './free-port.js'

/**
 * A real redis-server (Debian's package) on a free loopback port, without persistence, for the
 * alarm bus's tests. It can be stopped and started again on the same port (a Redis restart: empty,
 * since nothing is saved). Killed at teardown. Without redis-server on PATH this throws: tests that
 * need it fail, they never skip (CI installs it: .ci/run).
 */
export interface RedisServer {
  readonly port: number
  readonly url: string
  /** Everything the server wrote, for failure messages. */
  output (): string
  /** SIGKILL and wait for the exit: Redis lost, with what it held. */
  stop (): Promise<void>
  /** Starts it again on the same port (after stop). */
  start (): Promise<void>
}

const START_TIMEOUT_MS = 10_000

/** `port`: a given port (a Redis that comes up after the gateway); default a free one. */
export async function startRedis (t: Test, opts: { port?: number } = {}): Promise<RedisServer> {
  const port = opts.port ?? await freePort()
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()
  let text = ''

  const start = async (): Promise<void> => {
    const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe']
    })
    child = proc
    exited = new Promise<void>((resolve) => proc.once('close', () => resolve()))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start within ${START_TIMEOUT_MS} ms:\n${text}`)), START_TIMEOUT_MS)
      const onData = (chunk: Buffer): void => {
        text += chunk.toString()
        if (text.includes('Ready to accept connections')) {
          clearTimeout(timer)
          resolve()
        }
      }
      proc.stdout?.on('data', onData)
      proc.stderr?.on('data', (chunk: Buffer) => { text += chunk.toString() })
      proc.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer)
        reject(err.code === 'ENOENT' ? new Error('redis-server is not on PATH: install Debian\'s redis-server (apt-get install redis-server); the alarm bus tests need it') : err)
      })
      proc.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`redis-server exited with ${String(code)} before it was ready:\n${text}`))
      })
    })
  }
  const stop = async (): Promise<void> => {
    const proc = child
    child = undefined
    if (proc === undefined || proc.exitCode !== null) return
    proc.kill('SIGKILL')
    await exited
  }

  await start()
  t.teardown(stop)
  return { port, url: `redis://127.0.0.1:${port}`, output: () => text, stop, start }
}
