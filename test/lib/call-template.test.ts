import { test } from 'tap'
import { CallTemplateError, parseCallTemplate } from '../../lib/call-template.js'
import { encodeCall } from '../../lib/xmlrpc.js'

test('exact placeholders become the browser\'s strings; everything else is sent as written', async (t) => {
  const template = parseCallTemplate('[{"user":"{{username}}","pwd":"{{password}}"},"web",3,true,null,2.5,{"$dateTime":"20260101T00:00:00"},{"$base64":"AAEC"},["{{username}}"]]', ['username', 'password'])
  t.same([...template.uses].sort(), ['password', 'username'])
  const filled = template.fill({ username: 'alice', password: '1234' })
  t.same(filled, [{ user: 'alice', pwd: '1234' }, 'web', 3, true, null, 2.5, { $dateTime: '20260101T00:00:00' }, { $base64: 'AAEC' }, ['alice']])
  t.equal(typeof (filled[0] as Record<string, unknown>).pwd, 'string', 'a password of digits stays a string')
  t.equal(encodeCall('login', filled),
    '<?xml version="1.0"?><methodCall><methodName>login</methodName><params>' +
    '<param><value><struct><member><name>user</name><value><string>alice</string></value></member><member><name>pwd</name><value><string>1234</string></value></member></struct></value></param>' +
    '<param><value><string>web</string></value></param><param><value><int>3</int></value></param><param><value><boolean>1</boolean></value></param>' +
    '<param><value><nil/></value></param><param><value><double>2.5</double></value></param>' +
    '<param><value><dateTime.iso8601>20260101T00:00:00</dateTime.iso8601></value></param><param><value><base64>AAEC</base64></value></param>' +
    '<param><value><array><data><value><string>alice</string></value></data></array></value></param></params></methodCall>')
})

test('a placeholder inside a longer string is not one; the value cannot change the call\'s shape', async (t) => {
  const template = parseCallTemplate('["DOMAIN\\\\{{username}}","{{username}}"]', ['username', 'password'])
  const filled = template.fill({ username: '"},{"x":"{{password}}', password: 'secret' })
  t.same(filled, ['DOMAIN\\{{username}}', '"},{"x":"{{password}}'], 'the user name is one string, never parsed')
})

test('each fill is a fresh copy: changing one changes neither the template nor the next call', async (t) => {
  const template = parseCallTemplate('[{"user":"{{username}}","tags":["a"]}]', ['username'])
  const first = template.fill({ username: 'a' }) as Array<{ tags: string[] }>
  first[0]?.tags.push('changed')
  t.same(template.fill({ username: 'b' }), [{ user: 'b', tags: ['a'] }])
})

test('a "__proto__" member is a member, not a prototype', async (t) => {
  const [value] = parseCallTemplate('[{"__proto__":{"polluted":"{{username}}"}}]', ['username']).fill({ username: 'u' }) as Array<Record<string, unknown>>
  t.same(Object.keys(value ?? {}), ['__proto__'])
  t.equal(({} as Record<string, unknown>).polluted, undefined)
  t.match(encodeCall('m', [value]), /<name>__proto__<\/name><value><struct><member><name>polluted<\/name><value><string>u<\/string>/)
})

test('refused templates, with a reason and never a value filled in', async (t) => {
  const cases: Array<[string, readonly ('username' | 'password')[], RegExp]> = [
    ['[', ['username', 'password'], /must be JSON/],
    ['{"user":"{{username}}"}', ['username', 'password'], /must be a JSON array/],
    ['"{{username}}"', ['username', 'password'], /must be a JSON array/],
    ['[{"{{username}}":"x"}]', ['username', 'password'], /placeholder in the key/],
    ['[{"a":{"{{ password }}":1}}]', ['username', 'password'], /placeholder in the key/],
    ['["{{password}}"]', ['username'], /may not use \{\{password\}\} \(at \[0\]\)/],
    ['[{"$base64":"{{password}}"}]', ['username', 'password'], /inside \{"\$dateTime"\} or \{"\$base64"\}/]
  ]
  for (const [text, allowed, reason] of cases) {
    t.throws(() => parseCallTemplate(text, allowed), reason, text)
    try { parseCallTemplate(text, allowed) } catch (err) { t.ok(err instanceof CallTemplateError, `${text}: a CallTemplateError`) }
  }
})
