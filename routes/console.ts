import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance, FastifyReply } from 'fastify'
import fastifyStatic from '@fastify/static'

// dist/routes/console.js → the repository's public/ (HTML, CSS, icon) and dist/public/ (the
// client and console compiled by client/tsconfig.json).
const PAGE_DIR = fileURLToPath(new URL('../../public/', import.meta.url))
const SCRIPT_DIR = fileURLToPath(new URL('../public/', import.meta.url))

// No inline script or style anywhere; the alarm WebSocket is same-origin, which 'self' covers
// (CSP Level 3; test/slow/browser.test.ts checks Chromium reports no violation).
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'"
].join('; ')

const SECURITY_HEADERS = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin'
}

/**
 * The browser client at /legacy-gateway.js (always: apps on the gateway's origin may import it),
 * and the demo console at / when CONSOLE_ENABLED (default on in demo mode). Every route is named:
 * no wildcard, so nothing here can shadow /api, /ws, /healthz, /readyz or /metrics.
 */
export default async function consoleRoutes (fastify: FastifyInstance): Promise<void> {
  const { consoleEnabled, demo } = fastify.config

  // Registered inside this (encapsulated) plugin: reply.sendFile exists for these routes only.
  await fastify.register(fastifyStatic, { root: PAGE_DIR, serve: false })

  fastify.addHook('onSend', async (_request, reply) => {
    reply.headers(SECURITY_HEADERS)
  })

  // Not fingerprinted: revalidate every time (ETag / Last-Modified make that cheap).
  const sendFile = (reply: FastifyReply, name: string, root: string): FastifyReply =>
    reply.sendFile(name, root, { cacheControl: false }).header('cache-control', 'no-cache')

  if (!existsSync(join(SCRIPT_DIR, 'legacy-gateway.js'))) {
    fastify.log.warn({ dir: SCRIPT_DIR }, 'the browser client is not built (tsc -p client/tsconfig.json): /legacy-gateway.js and the console will not work')
  }
  fastify.get('/legacy-gateway.js', (_request, reply) => sendFile(reply, 'legacy-gateway.js', SCRIPT_DIR))

  if (!consoleEnabled) return

  // The page is the only place the server's settings reach the console: a data attribute, read
  // by console.js (no inline script).
  const page = readFileSync(join(PAGE_DIR, 'index.html'), 'utf8')
    .replace('data-demo="false"', `data-demo="${demo ? 'true' : 'false'}"`)

  fastify.get('/', (_request, reply) => {
    return reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(page)
  })
  fastify.get('/console.js', (_request, reply) => sendFile(reply, 'console.js', SCRIPT_DIR))
  fastify.get('/console.css', (_request, reply) => sendFile(reply, 'console.css', PAGE_DIR))
  fastify.get('/favicon.svg', (_request, reply) => sendFile(reply, 'favicon.svg', PAGE_DIR))
  fastify.log.info('demo console enabled at /')
}
