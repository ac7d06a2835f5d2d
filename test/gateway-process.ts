import { spawn, type ChildProcess } from 'node:child_process'
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { freePort } from './free-port.js'

export { freePort }

// The compiled entry point, next to dist/test/.
export const SERVER_JS = fileURLToPath(new URL('../server.js', import.meta.url))

export interface LogLine {
  level: number
  msg?: string
  reqId?: string
  req?: { method?: string, url?: string, remoteAddress?: string }
  [key: string]: unknown
}

export interface GatewayProcess {
  readonly child: ChildProcess
  readonly url: string
  readonly port: number
  /** Every JSON line written so far to stdout. */
  readonly logs: LogLine[]
  /** Everything written to stdout and stderr, for failure messages. */
  output (): string
  /** Resolves to the exit code (or the signal name) once the process is gone. */
  readonly exited: Promise<number | string>
  /** Resolves with the first log line that matches, or rejects after `timeoutMs`. */
  waitForLog (match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>
}

/**
 * `node dist/server.js` on a free loopback port with exactly this environment (plus PATH), and
 * resolves once it logs "Server listening". Killed with SIGKILL at teardown if still alive.
 */
export async function startGateway (t: Test, env: Record<string, string>, opts: { startTimeoutMs?: number } = {}): Promise<GatewayProcess> {
  const port = await freePort()
  const child = spawn(process.execPath, [SERVER_JS], {
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'info', LOGIN_RATE_LIMIT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const logs: LogLine[] = []
  let text = ''
  let partial = ''
  const waiters = new Set<() => void>()
  child.stdout?.setEncoding('utf8')
  child.stderr?.setEncoding('utf8')
  child.stdout?.on('data', (chunk: string) => {
    text += chunk
    partial += chunk
    const lines = partial.split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) {
      if (line.trim() === '') continue
      try {
        logs.push(JSON.parse(line) as LogLine)
      } catch {
        logs.push({ level: 0, msg: line })
      }
    }
    for (const wake of waiters) wake()
  })
  child.stderr?.on('data', (chunk: string) => { text += chunk })
  const exited = new Promise<number | string>((resolve) => {
    // 'close', not 'exit': by then stdout is read to the end, so every log line is in `logs`.
    child.once('close', (code, signal) => {
      resolve(code ?? signal ?? 'unknown')
      for (const wake of waiters) wake()
    })
  })
  let gone = false
  exited.then(() => { gone = true }, () => {})
  t.teardown(async () => {
    if (!gone) {
      child.kill('SIGKILL')
      await exited
    }
  })

  const waitForLog = (match: (line: LogLine) => boolean, timeoutMs = 5000): Promise<LogLine> => {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = logs.find(match)
        if (found !== undefined) {
          finish()
          resolve(found)
        } else if (gone) {
          finish()
          reject(new Error(`gateway exited before the expected log line; output:\n${text}`))
        }
      }
      const timer = setTimeout(() => {
        finish()
        reject(new Error(`no matching log line within ${timeoutMs} ms; output:\n${text}`))
      }, timeoutMs)
      const finish = (): void => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })
  }

  await waitForLog(line => typeof line.msg === 'string' && line.msg.startsWith('Server listening'), opts.startTimeoutMs ?? 10_000)
  return { child, url: `http://127.0.0.1:${port}`, port, logs, output: () => text, exited, waitForLog }
}

/** Waits for the exit code, or rejects after `timeoutMs`. */
export async function exitWithin (gw: GatewayProcess, timeoutMs: number): Promise<number | string> {
  const timeout = sleep(timeoutMs, 'timeout' as const, { ref: false })
  const result = await Promise.race([gw.exited, timeout])
  if (result === 'timeout') throw new Error(`the gateway did not exit within ${timeoutMs} ms; output:\n${gw.output()}`)
  return result
}

export interface HttpAnswer {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
  /** The body parsed as a JSON object (every answer of the gateway's API is one). */
  json: () => Record<string, unknown>
  /** The Cookie header to send back: every cookie set by this answer, with a value. */
  cookies: () => string
}

export interface HttpOptions {
  method?: string
  headers?: Record<string, string>
  body?: unknown
  /** The client's own address (any 127.0.0.0/8 address works on Linux loopback). */
  localAddress?: string
  timeoutMs?: number
}

/**
 * One HTTP request on a fresh connection (no pooling, so nothing is reused across a shutdown).
 * JSON bodies are sent with content-type application/json.
 */
export function request (url: string, opts: HttpOptions = {}): Promise<HttpAnswer> {
  const body = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body)
  const headers: Record<string, string> = { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers }
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: opts.method ?? (body === undefined ? 'GET' : 'POST'),
      headers,
      agent: false,
      ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {})
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.once('error', reject)
      res.once('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: text,
          json: () => JSON.parse(text),
          cookies: () => (res.headers['set-cookie'] ?? [])
            .map(c => c.split(';')[0] ?? '')
            .filter(c => !c.endsWith('='))
            .join('; ')
        })
      })
    })
    req.setTimeout(opts.timeoutMs ?? 10_000, () => req.destroy(new Error('request timed out')))
    req.once('error', reject)
    req.end(body)
  })
}
