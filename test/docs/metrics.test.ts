import { test } from 'node:test'
import assert from 'node:assert/strict'
import { glob, readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { parse } from 'yaml'
import { Metrics } from '../../sidecar/src/core/metrics.ts'
import { WebhookMetrics } from '../../sidecar/src/cli/webhook/metrics.ts'

const root = resolve(import.meta.dirname, '../..')
const operations = join(root, 'docs/operations.md')

/**
 * The daemon's own metric names, as /metrics exports them: read from the rendered text's `# TYPE`
 * lines, since not every series lives in the prom-client registry (the per-token expiry gauge is
 * rendered beside it, bounded by the cache).
 */
async function exportedNames(): Promise<string[]> {
  const text = await new Metrics({ identities: ['mi'] }).render()
  return [...text.matchAll(/^# TYPE (credential_sidecar_[a-z_]+) /gm)].map((match) => match[1]!).sort()
}

test('docs/operations.md lists every metric the daemon exports, in its metrics table', async () => {
  const text = await readFile(operations, 'utf8')
  const tableRows = new Set(
    [...text.matchAll(/^\| `(credential_sidecar_[a-z_]+)` *\|/gm)].map((match) => match[1]!),
  )
  const names = await exportedNames()
  assert.ok(names.length >= 10, `expected the daemon's metrics, got ${names.join(', ')}`)
  assert.deepEqual(
    names.filter((name) => !tableRows.has(name)),
    [],
    'exported but not in the table',
  )
  assert.deepEqual(
    [...tableRows].filter((name) => !names.includes(name)),
    [],
    'in the table but not exported',
  )
})

test('every credential_sidecar_ metric any doc mentions exists (histograms with _bucket/_count/_sum)', async () => {
  // Not metrics: the nftables tables of deploy/nftables/imds-lockdown.nft and imds-redirect.nft.
  // The admission webhook's metrics (docs/kubernetes.md) are its own process's.
  const webhook = new WebhookMetrics().registry.getMetricsAsArray().map((metric) => metric.name)
  const names = new Set([
    ...(await exportedNames()),
    ...webhook,
    'credential_sidecar_imds',
    'credential_sidecar_redirect',
  ])
  const unknown: string[] = []
  for await (const file of glob('**/*.md', {
    cwd: root,
    exclude: (entry) => /(^|\/)(node_modules|dist|\.git)$/.test(entry),
  })) {
    const text = await readFile(join(root, file), 'utf8')
    for (const [name] of text.matchAll(/\bcredential_sidecar_[a-z_]*[a-z]/g)) {
      const base = name.replace(/_(bucket|count|sum)$/, '')
      if (!names.has(name) && !names.has(base)) unknown.push(`${file}: ${name}`)
    }
  }
  assert.deepEqual(unknown, [])
})

test('the suggested alert rules are valid YAML naming only exported series', async () => {
  const text = await readFile(operations, 'utf8')
  const block = /### Suggested alerts[\s\S]*?```yaml\n([\s\S]*?)```/.exec(text)?.[1]
  assert.ok(block, 'no yaml block under "### Suggested alerts"')
  const rules = (parse(block) as { groups: { rules: { alert: string; expr: string }[] }[] }).groups.flatMap(
    (group) => group.rules,
  )
  assert.ok(rules.length >= 6, `expected the alert rules, got ${rules.length}`)
  const topics = ['Certificate', 'Refresh', 'UpstreamErrors', 'UpstreamSlow', 'NotReady']
  for (const topic of topics)
    assert.ok(
      rules.some((rule) => rule.alert.includes(topic)),
      `no alert about ${topic}`,
    )
  for (const rule of rules) {
    assert.equal(typeof rule.expr, 'string', rule.alert)
    assert.equal(
      rule.expr.split('(').length,
      rule.expr.split(')').length,
      `${rule.alert}: unbalanced parentheses`,
    )
  }
})
