import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { test, type Test } from 'tap'
import { build, login, JSON_HEADERS } from '../helper.js'
import { decodeResponse, encodeCall } from '../../lib/xmlrpc.js'

// Issue 18 against a real implementation nobody here wrote: Python's xmlrpc.server, with its own
// introspection and system.multicall. Skipped only when python3 is missing.

const PYTHON = 'python3'

const SERVER = String.raw`
import socketserver, sys, threading, xmlrpc.client
from xmlrpc.server import SimpleXMLRPCServer, SimpleXMLRPCRequestHandler

# Python's default HTTP/1.0 closes the connection after each answer; the gateway pins a login to
# its keep-alive socket and rightly treats that close as a lost session. HTTP/1.1 keeps it open.
SimpleXMLRPCRequestHandler.protocol_version = 'HTTP/1.1'

requests = []
lock = threading.Lock()

# Threads: with keep-alive, a single-threaded server would serve one socket until it closes, and
# every session has its own socket.
class Server(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True

    def _marshaled_dispatch(self, data, dispatch_method=None, path=None):
        # One entry per HTTP request that reached the dispatcher: the top-level method name.
        name = xmlrpc.client.loads(data)[1]
        if name != 'ledger':
            with lock:
                requests.append(name)
        return super()._marshaled_dispatch(data, dispatch_method, path)

server = Server(('127.0.0.1', 0), logRequests=False, allow_none=False)
server.register_introspection_functions()
server.register_multicall_functions()

def login(user, password):
    if password != user:
        raise xmlrpc.client.Fault(10, 'bad password')
    return {'user': user, 'level': 3}

def logout():
    return True

def add(a, b):
    """Adds two numbers."""
    return a + b

def echo(*args):
    """Returns its arguments as an array."""
    return args

def fail(code, text):
    """Always raises a Fault with the given code and string."""
    raise xmlrpc.client.Fault(code, text)

def ledger():
    """The top-level method of every request served so far, in order."""
    with lock:
        return list(requests)

for f in (login, logout, add, echo, fail, ledger):
    server.register_function(f)

print(server.server_address[1], flush=True)
server.serve_forever()
`

function hasPython (): boolean {
  const probe = spawnSync(PYTHON, ['--version'], { stdio: 'ignore' })
  return (probe.error as NodeJS.ErrnoException | undefined)?.code !== 'ENOENT'
}

/** Starts the Python server on an ephemeral loopback port; killed when the test ends. */
async function startPython (t: Test): Promise<{ url: string, ledger: () => Promise<string[]> }> {
  const child = spawn(PYTHON, ['-c', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit')
      child.kill('SIGKILL')
      await exited
    }
  })
  const lines = createInterface({ input: child.stdout })
  const port = await Promise.race([
    once(lines, 'line').then(([line]) => Number(line)),
    once(child, 'exit').then(([code]) => { throw new Error(`python3 exited (${String(code)}) before listening`) }),
    new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('python3 did not listen within 5 s')), 5000).unref())
  ])
  lines.close()
  const url = `http://127.0.0.1:${port}/RPC2`
  // Read on a plain connection of its own, beside the gateway's sockets; not counted.
  const ledger = async (): Promise<string[]> => {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'text/xml' }, body: encodeCall('ledger', []) })
    const answer = decodeResponse(await res.text())
    if (answer.fault || !Array.isArray(answer.value)) throw new Error('ledger: unexpected answer')
    return answer.value.map(String)
  }
  return { url, ledger }
}

test('Python SimpleXMLRPCServer: methods, signatures and help come through; a batch of 10 is one request', { skip: hasPython() ? false : `${PYTHON} is not installed` }, async (t) => {
  const python = await startPython(t)
  const { app } = await build(t, { env: { LEGACY_URL: python.url } })
  const cookie = await login(app, 'alice')
  t.same(await python.ledger(), ['login'])

  const res = await app.inject({ url: '/api/methods', headers: { cookie } })
  t.equal(res.statusCode, 200)
  const { introspection, methods } = res.json()
  t.equal(introspection, true)
  const byName = new Map<string, unknown>(methods.map((m: { name: string }) => [m.name, m]))
  t.same([...byName.keys()].sort(), ['add', 'echo', 'fail', 'ledger', 'system.listMethods', 'system.methodHelp', 'system.methodSignature'],
    'login, logout and system.multicall are not listed')
  // Python answers methodSignature with the string "signatures not supported": null.
  t.same(byName.get('add'), { name: 'add', signatures: null, help: 'Adds two numbers.' })
  t.same(byName.get('echo'), { name: 'echo', signatures: null, help: 'Returns its arguments as an array.' })
  t.same(byName.get('fail'), { name: 'fail', signatures: null, help: 'Always raises a Fault with the given code and string.' })
  t.match(byName.get('system.listMethods'), { signatures: null, help: /list of the methods supported by the server/ })
  t.same((await python.ledger()).slice(1), ['system.listMethods', 'system.multicall'], 'the list, then every detail in one multicall')

  const before = (await python.ledger()).length
  const calls = [
    { method: 'add', params: [2, 3] },
    { method: 'fail', params: [42, 'valve stuck'] },
    ...Array.from({ length: 8 }, (_v, i) => ({ method: 'echo', params: [i, 'x'] }))
  ]
  const batch = await app.inject({ method: 'POST', url: '/api/rpc', headers: { ...JSON_HEADERS, cookie }, payload: { calls } })
  t.equal(batch.statusCode, 200)
  const { results } = batch.json()
  t.equal(results.length, 10)
  t.same(results[0], { result: 5 })
  t.same(results[1], { error: { statusCode: 422, code: 'RPC_FAULT', message: 'valve stuck', faultCode: 42 } })
  t.same(results.slice(2), Array.from({ length: 8 }, (_v, i) => ({ result: [i, 'x'] })))
  t.same((await python.ledger()).slice(before), ['system.multicall'], '10 calls, exactly one legacy request')

  const single = await app.inject({ method: 'POST', url: '/api/rpc/add', headers: { ...JSON_HEADERS, cookie }, payload: [1, 1] })
  t.equal(single.statusCode, 200)
  t.same(single.json(), { result: 2 }, 'the session goes on after the batch')
})

test('Python SimpleXMLRPCServer with LEGACY_MULTICALL=false: a batch of 10 is 10 requests, a fault does not stop the rest', { skip: hasPython() ? false : `${PYTHON} is not installed` }, async (t) => {
  const python = await startPython(t)
  const { app } = await build(t, { env: { LEGACY_URL: python.url, LEGACY_MULTICALL: 'false' } })
  const cookie = await login(app, 'bob')
  const before = (await python.ledger()).length
  const calls = [
    { method: 'echo', params: ['a'] },
    { method: 'fail', params: [7, 'no'] },
    ...Array.from({ length: 8 }, (_v, i) => ({ method: 'add', params: [i, 1] }))
  ]
  const batch = await app.inject({ method: 'POST', url: '/api/rpc', headers: { ...JSON_HEADERS, cookie }, payload: { calls } })
  t.equal(batch.statusCode, 200)
  const { results } = batch.json()
  t.same(results[0], { result: ['a'] })
  t.same(results[1], { error: { statusCode: 422, code: 'RPC_FAULT', message: 'no', faultCode: 7 } })
  t.same(results.slice(2), Array.from({ length: 8 }, (_v, i) => ({ result: i + 1 })))
  t.same((await python.ledger()).slice(before), calls.map(c => c.method), 'one request per call, in order')
})
