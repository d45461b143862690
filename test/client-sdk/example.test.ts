import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { startStack } from '../support/stack.ts'

const example = new URL('../../client-sdk/examples/call-demo-resource.ts', import.meta.url).pathname

test('examples/call-demo-resource.ts calls the demo resource with mtls_pop', async (t) => {
  const stack = await startStack(t, {
    configYaml: () =>
      'defaultIdentity: mi\nidentities:\n  mi:\n    managedIdentity: {}\n  mi-pop:\n    managedIdentity: {}\n    protocolScheme: MTLS_POP\n',
  })
  const dir = mkdtempSync(join(tmpdir(), 'sdk-example-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const caFile = join(dir, 'ca.pem')
  writeFileSync(caFile, stack.emulator.caPem)
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--conditions=credential-sidecar-source', example],
    {
      env: {
        PATH: process.env['PATH'] ?? '',
        CREDENTIAL_SIDECAR_ENDPOINT: stack.url,
        DEMO_RESOURCE_URL: stack.emulator.resourceUrl,
        DEMO_CA_FILE: caFile,
      },
      timeout: 60_000,
    },
  )
  assert.match(stdout, /^token_type mtls_pop, expires .*, bound to certificate x5t#S256 \S+$/m)
  const line = stdout.split('\n').find((l) => l.startsWith('200 '))
  assert.ok(line, stdout)
  const body = JSON.parse(line.slice(4)) as Record<string, unknown>
  assert.equal(body['scheme'], 'mtls_pop')
  assert.doesNotMatch(stdout, /eyJ|PRIVATE KEY/, 'no token or key printed')
})
