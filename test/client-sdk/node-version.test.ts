import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { assertSupportedNode, requiredNode } from '../../client-sdk/src/node-version.ts'

// The real thing (the packed SDK imported on the machine's Node 20, ESM and CommonJS) is in
// test/packaging/installed-packages.test.ts; this pins the boundary and the engines field.

test('the version guard accepts 22.15 and later, and names both versions otherwise', () => {
  for (const ok of ['22.15.0', '22.23.3', '23.0.0', '24.21.0', '30.1.2']) assertSupportedNode(ok)
  for (const old of ['22.14.9', '21.99.0', '20.20.2', '18.0.0'])
    assert.throws(() => assertSupportedNode(old), {
      name: 'Error',
      message: `credential-sidecar-client requires Node.js 22.15 or later; this is Node.js ${old}`,
    })
})

test("the guard's version is the package's engines.node", async () => {
  const pkg = JSON.parse(
    await readFile(new URL('../../client-sdk/package.json', import.meta.url), 'utf8'),
  ) as { engines: { node: string } }
  assert.equal(pkg.engines.node, `>=${requiredNode.major}.${requiredNode.minor}`)
})

test('the guard is the first import of the SDK entry and imports nothing itself', async () => {
  const entry = await readFile(new URL('../../client-sdk/src/index.ts', import.meta.url), 'utf8')
  const imports = [...entry.matchAll(/^(?:import|export)\b.*?from '([^']+)'|^import '([^']+)'/gm)].map(
    (m) => m[1] ?? m[2],
  )
  assert.equal(imports[0], './node-version.ts')
  const guard = await readFile(new URL('../../client-sdk/src/node-version.ts', import.meta.url), 'utf8')
  assert.doesNotMatch(guard, /^\s*(import|export .* from)\b/m)
})
