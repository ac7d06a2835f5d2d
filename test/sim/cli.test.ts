import t from 'tap'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

const CLI = fileURLToPath(new URL('../../sim/cli.js', import.meta.url))

function run (args: string[], env: Record<string, string>): { child: ChildProcessWithoutNullStreams, output: () => string, waitFor: (re: RegExp) => Promise<RegExpMatchArray> } {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  return {
    child,
    output: () => out,
    waitFor: async (re) => {
      const deadline = Date.now() + 10_000
      for (;;) {
        const m = out.match(re)
        if (m !== null) return m
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`no ${re} in output:\n${out}`)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    }
  }
}

t.test('the CLI starts on ports from the environment, prints its URLs and closes on SIGTERM', async (t) => {
  const { child, waitFor } = run([], { SIM_RPC_PORT: '0', SIM_CONTROL_PORT: '0', SIM_ALARM_PORT: '0', SIM_ALARM_INTERVAL_MS: '0' })
  t.teardown(() => { child.kill('SIGKILL') })
  const rpcUrl = (await waitFor(/rpc: +(http:\/\/127\.0\.0\.1:\d+\/RPC2)/))[1] ?? ''
  const controlUrl = (await waitFor(/control: +(http:\/\/127\.0\.0\.1:\d+)/))[1] ?? ''
  await waitFor(/alarms: +udp:\/\/127\.0\.0\.1:\d+ \(no timer alarms\)/)
  await waitFor(/demo \/ demo/)

  const state = await (await fetch(controlUrl + '/state')).json() as { running: boolean, rpcUrl: string }
  t.match(state, { running: true, rpcUrl })
  const login = await fetch(rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'text/xml' },
    body: '<?xml version="1.0"?><methodCall><methodName>login</methodName><params><param><value>demo</value></param><param><value>demo</value></param></params></methodCall>'
  })
  t.match(await login.text(), /Welcome to the legacy simulator/)

  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const [code] = await exited
  t.equal(code, 0)
})

t.test('options win over the environment; --quiet; SIGINT', async (t) => {
  const { child, waitFor, output } = run(['--rpc-port', '0', '--control-port=0', '--alarm-port', '0', '--alarm-interval-ms', '1000', '--quiet'],
    { SIM_RPC_PORT: '1', SIM_CONTROL_PORT: 'x', SIM_ALARM_PORT: '1' })
  t.teardown(() => { child.kill('SIGKILL') })
  await waitFor(/a sample alarm every 1000 ms/)
  const exited = once(child, 'exit')
  child.kill('SIGINT')
  t.same(await exited, [0, null])
  t.notMatch(output(), /rpc server listening/, 'quiet: no event log')
})

t.test('bad settings exit 2 with the usage', async (t) => {
  const { child, output } = run([], { SIM_RPC_PORT: '70000' })
  t.teardown(() => { child.kill('SIGKILL') })
  const [code] = await once(child, 'exit')
  t.equal(code, 2)
  t.match(output(), /rpc port must be an integer in 0\.\.65535/)
  t.match(output(), /usage:/)
})
