/**
 * Does the Accept header prefer XML over JSON? Used by /api/xml/* to pass legacy bytes through
 * untouched. Specific types beat wildcards; at equal quality the one listed first wins; no Accept,
 * or one that prefers neither, means JSON.
 */
export function prefersXml (accept: string | undefined): boolean {
  if (accept === undefined || accept === '') return false
  let xml = { q: 0, specificity: -1, index: Infinity }
  let json = { q: 0, specificity: -1, index: Infinity }
  const parts = accept.split(',')
  for (let index = 0; index < parts.length; index++) {
    const [rawType = '', ...params] = (parts[index] as string).split(';')
    const type = rawType.trim().toLowerCase()
    let q = 1
    for (const p of params) {
      const [k, v] = p.split('=')
      if (k?.trim().toLowerCase() === 'q' && v !== undefined) {
        const n = Number(v.trim())
        q = Number.isFinite(n) ? Math.min(Math.max(n, 0), 1) : 0
      }
    }
    const matchXml = type === 'application/xml' || type === 'text/xml' || type.endsWith('+xml') ? 2 : type === 'text/*' ? 1 : type === '*/*' ? 0 : -1
    const matchJson = type === 'application/json' ? 2 : type === 'application/*' ? 1 : type === '*/*' ? 0 : -1
    // application/* also matches application/xml; the more specific match decides.
    const matchXmlApp = type === 'application/*' ? 1 : -1
    const xmlSpec = Math.max(matchXml, matchXmlApp)
    if (xmlSpec > xml.specificity) xml = { q, specificity: xmlSpec, index }
    if (matchJson > json.specificity) json = { q, specificity: matchJson, index }
  }
  if (xml.q <= 0) return false
  if (xml.q !== json.q) return xml.q > json.q
  // Same quality: a specific XML type beats a wildcard that only happens to cover JSON.
  if (xml.specificity !== json.specificity) return xml.specificity > json.specificity
  return xml.index < json.index
}
