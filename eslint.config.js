import neostandard from 'neostandard'

// The console and the client library build the page from data: they never write markup from it.
const noMarkupFromData = {
  files: ['client/**/*.ts'],
  rules: {
    'no-eval': 'error',
    'no-implied-eval': 'error',
    'no-new-func': 'error',
    'no-restricted-properties': ['error',
      { property: 'innerHTML', message: 'Build nodes with textContent and createElement: data never becomes markup.' },
      { property: 'outerHTML', message: 'Build nodes with textContent and createElement: data never becomes markup.' },
      { property: 'insertAdjacentHTML', message: 'Build nodes with textContent and createElement: data never becomes markup.' },
      { object: 'document', property: 'write', message: 'Build nodes with textContent and createElement: data never becomes markup.' },
      { object: 'document', property: 'writeln', message: 'Build nodes with textContent and createElement: data never becomes markup.' }
    ]
  }
}

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.tap/**', '.scratch/**', 'test-artifacts/**']
  }),
  noMarkupFromData
]
