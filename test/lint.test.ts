import { test } from 'tap'
import { fileURLToPath } from 'node:url'
import { ESLint } from 'eslint'

// The console builds its page from legacy data: a lint rule (eslint.config.js) keeps markup out of
// it. This proves the rule is there and applies to client/, so that it cannot quietly go missing.
test('the browser code may not write markup from data', async (t) => {
  const eslint = new ESLint({ cwd: fileURLToPath(new URL('../../', import.meta.url)) })
  const refused = [
    'document.body.innerHTML = location.hash',
    'document.body.outerHTML = location.hash',
    'document.body.insertAdjacentHTML(\'beforeend\', location.hash)',
    'document.write(location.hash)',
    'eval(location.hash)',
    'new Function(location.hash)()'
  ]
  for (const line of refused) {
    const [result] = await eslint.lintText(`${line}\n`, { filePath: 'client/probe.ts' })
    const rules = (result?.messages ?? []).map(m => m.ruleId)
    t.ok(rules.some(r => r === 'no-restricted-properties' || r === 'no-eval' || r === 'no-new-func'), `${line}: refused (${rules.join(', ')})`)
  }
  const [allowed] = await eslint.lintText('document.body.textContent = location.hash\n', { filePath: 'client/probe.ts' })
  t.same(allowed?.messages.map(m => m.ruleId), [], 'textContent is fine')
})
