import { test, type Test } from 'tap'
import { LegacyPathError, legacyTarget, normalizeLegacyPath, pathKey, splitTarget } from '../../lib/legacy-path.js'

function refused (t: Test, fn: () => unknown, pattern: RegExp, name: string): void {
  let error: unknown
  try {
    fn()
  } catch (err) {
    error = err
  }
  t.ok(error instanceof LegacyPathError, `${name}: refused`)
  t.match((error as Error | undefined)?.message, pattern, `${name}: says why`)
}

test('plain paths are already normal and come back as they are', async (t) => {
  for (const path of ['/', '/xml/devices', '/xml/devices/', '/a-b_c~d/e.f', "/!$&'()*+,;=:@", '/xml/.hidden', '/%C3%A9t%C3%A9']) {
    t.equal(normalizeLegacyPath(path), path, path)
  }
})

test('dot and empty segments are removed, unreserved escapes decoded, others kept upper-case', async (t) => {
  const cases: Array<[string, string]> = [
    ['/a/../b', '/b'],
    ['/a/./b', '/a/b'],
    ['/a/b/..', '/a/'],
    ['/a/b/.', '/a/b/'],
    ['/../../a', '/a'],
    ['/..', '/'],
    ['//a//b//', '/a/b/'],
    ['//', '/'],
    ['/a/%2e%2e/b', '/b'],
    ['/a/%2E./b', '/b'],
    ['/a/.%2e', '/'],
    ['/%2e/a', '/a'],
    ['/%7Euser/%41%62%2D%5F', '/~user/Ab-_'],
    ['/a%3ab', '/a%3Ab'],
    ['/a%20b', '/a%20b'],
    ['/%c3%a9', '/%C3%A9'],
    ['/...', '/...'],
    ['/a..b/..c', '/a..b/..c'],
    ['/a"b<c>d', '/a%22b%3Cc%3Ed'],
    ['/{x}|[y]^`#', '/%7Bx%7D%7C%5By%5D%5E%60%23']
  ]
  for (const [input, expected] of cases) t.equal(normalizeLegacyPath(input), expected, input)
  t.equal(normalizeLegacyPath(normalizeLegacyPath('/a/%2e%2e/b%3a//c/')), '/b%3A/c/', 'normalising twice changes nothing')
})

test('what cannot become a legacy path is refused, saying why', async (t) => {
  refused(t, () => normalizeLegacyPath('/a\\b'), /backslash/, 'a backslash')
  refused(t, () => normalizeLegacyPath('/\\\\evil.example/x'), /backslash/, 'a leading backslash')
  refused(t, () => normalizeLegacyPath('/a\u0001b'), /U\+0001/, 'a raw control character')
  refused(t, () => normalizeLegacyPath('/a\u007fb'), /U\+007F/, 'DEL')
  refused(t, () => normalizeLegacyPath('/a b'), /U\+0020/, 'a raw space')
  refused(t, () => normalizeLegacyPath('/caf\u00e9'), /U\+00E9/, 'a raw non-ASCII byte')
  refused(t, () => normalizeLegacyPath('/\u963f'), /U\+963F/, 'a raw non-Latin character')
  refused(t, () => normalizeLegacyPath('/a%zz'), /invalid percent escape "%zz"/, 'an invalid escape')
  refused(t, () => normalizeLegacyPath('/a%4'), /invalid percent escape/, 'a truncated escape')
  refused(t, () => normalizeLegacyPath('/a%'), /invalid percent escape/, 'a lone %')
  refused(t, () => normalizeLegacyPath('/a%2Fb'), /%2F/, 'an encoded slash')
  refused(t, () => normalizeLegacyPath('/a%2fb'), /%2F/, 'an encoded slash, lower case')
  refused(t, () => normalizeLegacyPath('/a%5Cb'), /%5C/, 'an encoded backslash')
  refused(t, () => normalizeLegacyPath('/a%00b'), /%00/, 'an encoded NUL')
  refused(t, () => normalizeLegacyPath('/a%0d%0aX-Injected:1'), /%0D/, 'an encoded CR LF')
  refused(t, () => normalizeLegacyPath('/a%7f'), /%7F/, 'an encoded DEL')
  refused(t, () => normalizeLegacyPath('a/b'), /start with \//, 'no leading slash')
})

test('request targets: origin-form and absolute-form, the query as received', async (t) => {
  t.same(splitTarget('/a/b?x=1&y=%zz'), { path: '/a/b', query: '?x=1&y=%zz' })
  t.same(splitTarget('/a/b'), { path: '/a/b', query: '' })
  t.same(splitTarget('/a?'), { path: '/a', query: '?' })
  t.same(splitTarget('http://127.0.0.1:3000/api/xml/a?b=/c'), { path: '/api/xml/a', query: '?b=/c' })
  t.same(splitTarget('HTTPS://user@gw.example.com/a'), { path: '/a', query: '' })
  t.same(splitTarget('http://gw.example.com?x'), { path: '/', query: '?x' })
  refused(t, () => splitTarget('*'), /neither a path nor/, 'asterisk-form')
  refused(t, () => splitTarget('gw.example.com:443'), /neither a path nor/, 'authority-form')
  refused(t, () => splitTarget('ftp://x/a'), /neither a path nor/, 'another scheme')
  refused(t, () => splitTarget('/a?x=\u00e9'), /query/, 'a non-ASCII query')

  t.same(legacyTarget('/api/xml/xml/devices?x=1', '/api/xml'), { path: '/xml/devices', query: '?x=1' })
  t.same(legacyTarget('http://127.0.0.1:3000/api/xml/xml/device?id=p3', '/api/xml'), { path: '/xml/device', query: '?id=p3' })
  t.same(legacyTarget('/api/%78ml/xml/devices', '/api/xml'), { path: '/xml/devices', query: '' }, 'an escaped prefix as the router matched it')
  t.same(legacyTarget('/api/xml/', '/api/xml'), { path: '/', query: '' })
  t.same(legacyTarget('/api/xml/../../RPC2', '/api/xml'), { path: '/RPC2', query: '' }, 'dot segments stop at the legacy root')
  refused(t, () => legacyTarget('/api/other/x', '/api/xml'), /not under \/api\/xml/, 'another prefix')
  refused(t, () => legacyTarget('/api/xml/a\\b', '/api/xml'), /backslash/, 'through legacyTarget')
})

test('pathKey: the spellings of one path have one key', async (t) => {
  const rpc = pathKey('/RPC2')
  t.equal(rpc, '/rpc2')
  for (const spelling of [
    '/RPC2', '/rpc2', '/Rpc2/', '/RPC2//', '/x/../RPC2', '/%52PC2', '/%2552PC2', '/%252552PC2',
    '/RPC2;jsessionid=1', '/RPC2;a/', '/x/..;/RPC2', '/RPC2.', '/RPC2. ', '/RPC2%2500.xml', '/x%255c..%255cRPC2',
    '/./RPC2/.', '/x/..%20/RPC2', '/RPC2/x/..'
  ]) t.equal(pathKey(spelling), rpc, spelling)
  for (const other of ['/RPC', '/RPC2x', '/RPC2/x', '/x/RPC2', '/RPC2.xml', '/RP%43']) t.not(pathKey(other), rpc, other)
  t.equal(pathKey('/'), '/')
  t.equal(pathKey('//'), '/')
  t.equal(pathKey('/a/b/c'), '/a/b/c')
})
