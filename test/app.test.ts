import { test } from 'tap'
import { build } from './helper.js'

// server.ts and the tests build the server from the same serverOptions (app.ts), so what runs
// in production is what the tests run against.
test('the server has production timeouts: headers 10 s, request 30 s, keep-alive 72 s', async (t) => {
  const { app } = await build(t)
  t.equal(app.server.headersTimeout, 10_000)
  t.equal(app.server.requestTimeout, 30_000)
  t.equal(app.server.keepAliveTimeout, 72_000)
})
