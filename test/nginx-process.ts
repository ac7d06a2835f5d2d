import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { freePort } from './free-port.js'

/**
 * A real nginx running a shipped site of deploy/ on loopback, for the slow tests
 * (test/slow/nginx.test.ts, test/slow/cluster.test.ts): the upstream addresses become the test's
 * gateways, the HTTPS server listens in plain HTTP, the HTTP→HTTPS redirect is left out; all else
 * is used as shipped.
 */

export const DEPLOY = fileURLToPath(new URL('../../deploy/', import.meta.url))

export function findNginx (): string | undefined {
  if (process.env.NGINX !== undefined) return process.env.NGINX
  for (const candidate of ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx']) {
    if (existsSync(candidate)) return candidate
  }
  const which = spawnSync('sh', ['-c', 'command -v nginx'], { encoding: 'utf8' })
  return which.status === 0 ? which.stdout.trim() : undefined
}

/** Top-level statements of an nginx config (a directive up to `;`, or a block up to its `}`). */
function statements (conf: string): string[] {
  const text = conf.split('\n').filter(line => !/^\s*#/.test(line)).join('\n')
  const out: string[] = []
  let depth = 0
  let quote: string | undefined
  let start = 0
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (quote !== undefined) {
      if (c === '\\') i++
      else if (c === quote) quote = undefined
      continue
    }
    if (c === '"' || c === "'") quote = c
    else if (c === '{') depth++
    else if (c === '}' || (c === ';' && depth === 0)) {
      if (c === '}') depth--
      if (depth === 0) {
        out.push(text.slice(start, i + 1).trim())
        start = i + 1
      }
    }
  }
  return out.filter(Boolean)
}

/**
 * The shipped site, made runnable on loopback without certificates: the upstream addresses
 * become the test's gateways, the HTTPS server listens on `listen` in plain HTTP, and the
 * HTTP→HTTPS redirect server is left out. Everything else (maps, upstream groups, locations,
 * headers, timeouts) is used exactly as shipped.
 */
export function siteForTest (shipped: string, listen: string, upstreams: Record<string, string>): string {
  const kept: string[] = []
  for (const statement of statements(shipped)) {
    if (/^server\s*\{/.test(statement)) {
      if (/\breturn\s+301\b/.test(statement)) continue
      let listened = false
      const lines = statement.split('\n').flatMap((line) => {
        if (/^\s*listen\s/.test(line)) {
          if (listened) return []
          listened = true
          return [`    listen ${listen};`]
        }
        if (/^\s*(ssl_|http2\s)/.test(line)) return []
        return [line]
      })
      kept.push(lines.join('\n'))
      continue
    }
    let s = statement
    for (const [from, to] of Object.entries(upstreams)) s = s.split(from).join(to)
    kept.push(s)
  }
  return kept.join('\n\n') + '\n'
}

export function mainConfig (dir: string, site: string): string {
  // Running as root, nginx's workers would switch to an unprivileged user that cannot write the
  // temporary directories below.
  const user = process.getuid?.() === 0 ? 'user root;\n' : ''
  return `${user}worker_processes 1;
events { worker_connections 1024; }
http {
    access_log ${dir}/access.log;
    client_body_temp_path ${dir}/tmp/body;
    proxy_temp_path ${dir}/tmp/proxy;
    fastcgi_temp_path ${dir}/tmp/fastcgi;
    uwsgi_temp_path ${dir}/tmp/uwsgi;
    scgi_temp_path ${dir}/tmp/scgi;

${site}
}
`
}

async function waitForPort (port: number, host: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ port, host }, () => { socket.destroy(); resolve(true) })
      socket.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > until) throw new Error(`nothing listens on ${host}:${port}`)
    await sleep(25)
  }
}

export interface NginxProcess {
  readonly port: number
  readonly base: string
  /** The site as run. */
  readonly site: string
}

/** nginx with deploy/<siteFile>, upstream addresses replaced as given; stopped at teardown. */
export async function startNginx (t: Test, nginx: string, siteFile: string, upstreams: Record<string, string>): Promise<NginxProcess> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lg-nginx-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await mkdir(path.join(dir, 'tmp'))
  const port = await freePort()
  const shipped = await readFile(path.join(DEPLOY, siteFile), 'utf8')
  const site = siteForTest(shipped, `127.0.0.1:${port}`, upstreams)
  const confPath = path.join(dir, 'nginx.conf')
  await writeFile(confPath, mainConfig(dir, site))
  const args = ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', confPath, '-g', `daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log;`]
  const child = spawn(nginx, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      await Promise.race([exited, sleep(3000)])
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  })
  try {
    await Promise.race([waitForPort(port, '127.0.0.1', 5000), exited.then(() => { throw new Error('nginx exited') })])
  } catch (err) {
    const log = await readFile(path.join(dir, 'error.log'), 'utf8').catch(() => '')
    throw new Error(`nginx did not start: ${(err as Error).message}\n${output}\n${log}`)
  }
  return { port, base: `http://127.0.0.1:${port}`, site }
}
