import { test } from 'tap'
import { methodPolicy, pathPolicy, PolicyError } from '../../lib/policy.js'
import { normalizeLegacyPath } from '../../lib/legacy-path.js'

test('method patterns: * is any run, allow is exact, deny is case-blind and beats allow', async (t) => {
  const open = methodPolicy(undefined, undefined)
  t.ok(open.allows('anything.at.all'), 'the default allows every method')
  const site = methodPolicy('device.*,alarm.ack,whoami', 'device.reboot,*.shutdown')
  const cases: Array<[string, boolean]> = [
    ['device.list', true], ['device.', true], ['device.get.all', true], ['alarm.ack', true], ['whoami', true],
    ['device', false], ['alarm.acknowledge', false], ['alarm.ac', false], ['xwhoami', false],
    ['DEVICE.list', false], // allow is exact
    ['device.reboot', false], ['Device.Reboot', false], ['DEVICE.REBOOT', false], // deny is case-blind, beats allow
    ['device.shutdown', false], ['system.shutdown', false]
  ]
  for (const [method, allowed] of cases) t.equal(site.allows(method), allowed, `${method}: ${allowed ? 'allowed' : 'refused'}`)
  t.notOk(methodPolicy('a.b', undefined).allows('aXb'), 'a dot is a dot, not a regular expression')
  t.same(site.allow, ['device.*', 'alarm.ack', 'whoami'])
  t.same(site.deny, ['device.reboot', '*.shutdown'])
})

test('a pattern that is not a method or a path is refused at start, naming the variable', async (t) => {
  t.throws(() => methodPolicy('a b', undefined), PolicyError)
  t.throws(() => methodPolicy('*', 'x(y)'), /RPC_DENY has "x\(y\)", which is not a pattern/)
  t.throws(() => pathPolicy('reports/*', undefined), /XML_ALLOW has "reports\/\*", which is not a pattern/)
  t.throws(() => pathPolicy('/*', '/a b'), /XML_DENY/)
})

test('a tricky spelling cannot pass a path deny entry', async (t) => {
  const policy = pathPolicy('/*', '/admin/*,/config')
  // What the browser writes after /api/xml, normalised as the route does (lib/legacy-path.ts).
  const refused = [
    '/admin/x', '/admin/', '/admin', '//admin/x', '/./admin/x', '/public/../admin/x', '/public/%2e%2e/admin/x',
    '/public/%2E%2E/admin/x', '/%61dmin/x', '/Admin/x', '/ADMIN/X', '/admin;v=1/x', '/admin./x', '/admin%20/x',
    '/config', '/config/', '/Config', '/config;jsessionid=1', '/%63onfig', '/admin%252fx/y'
  ]
  for (const raw of refused) t.notOk(policy.allows(normalizeLegacyPath(raw)), `${raw} is refused`)
  const allowed = ['/reports/admin/x', '/administrator', '/configs', '/xml/devices', '/']
  for (const raw of allowed) t.ok(policy.allows(normalizeLegacyPath(raw)), `${raw} is allowed`)
})

test('path allow lists match the normalised path exactly', async (t) => {
  const policy = pathPolicy('/xml/devices,/reports/*', '/reports/secret/*')
  t.ok(policy.allows('/xml/devices'))
  t.notOk(policy.allows('/xml/devices/1'), 'an exact entry is exact')
  t.notOk(policy.allows('/XML/devices'), 'case-sensitive')
  t.ok(policy.allows(normalizeLegacyPath('/reports/2026/../today')))
  t.ok(policy.allows('/reports/'))
  t.notOk(policy.allows('/reports'), '/reports/* names what is under /reports/')
  t.notOk(policy.allows(normalizeLegacyPath('/reports/x/../secret/plan')), 'deny beats allow')
  t.notOk(policy.allows('/other'))
})
