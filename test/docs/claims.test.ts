import { test } from 'node:test'
import assert from 'node:assert/strict'
import { glob, readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'

const root = resolve(import.meta.dirname, '../..')

async function markdownFiles(): Promise<string[]> {
  const files: string[] = []
  for await (const file of glob('**/*.md', {
    cwd: root,
    exclude: (entry) => /(^|\/)(node_modules|dist|\.git)$/.test(entry),
  })) {
    files.push(file)
  }
  return files
}

// The name is not published on a registry (contract §5): `npx credential-sidecar` outside a checkout
// would fetch whatever a stranger published under it. Each use must say it runs in a checkout.
test('every "npx credential-sidecar" in the docs says it runs in a checkout of the repository', async () => {
  const unqualified: string[] = []
  for (const file of await markdownFiles()) {
    const lines = (await readFile(join(root, file), 'utf8')).split('\n')
    lines.forEach((line, index) => {
      if (!line.includes('npx credential-sidecar')) return
      const context = lines.slice(Math.max(0, index - 4), index + 1).join('\n')
      if (!/\b(checkout|clone)\b/i.test(context)) unqualified.push(`${file}:${index + 1}: ${line.trim()}`)
    })
  }
  assert.deepEqual(unqualified, [])
})

test('the README gives the two commands from a fresh clone and inject through the image is documented', async () => {
  const readme = await readFile(join(root, 'README.md'), 'utf8')
  for (const command of ['npm install', 'npx credential-sidecar demo', 'npm test'])
    assert.ok(readme.includes(command), `README.md lacks ${command}`)
  const kubernetes = await readFile(join(root, 'docs/kubernetes.md'), 'utf8')
  assert.match(kubernetes, /docker run --rm -i \S+ inject -/)
})
