import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startEmulator } from '../support/emulator.ts'
import { startProcess } from './process.ts'

test("the daemon's output at debug level contains no token and no secret header value", async (t) => {
  const emulator = await startEmulator()
  t.after(() => emulator.close())
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-logs-'))
  const secret = 'caller-secret-' + Math.random().toString(36).slice(2)
  writeFileSync(join(dir, 'secret'), secret, { mode: 0o600 })
  const file = join(dir, 'config.yaml')
  writeFileSync(
    file,
    `listen:\n  port: 0\nlog:\n  level: trace\ncallers:\n  secretFile: ${join(dir, 'secret')}\nupstream:\n  imdsEndpoint: ${emulator.imdsUrl}\nidentities:\n  mi:\n    managedIdentity: {}\n`,
  )
  const proc = startProcess(t, ['--config', file])
  const { url } = await proc.waitFor('listening')
  const headers = { Metadata: 'true', 'X-IDENTITY-HEADER': secret }
  const tokens: string[] = []
  for (const resource of ['https://management.azure.com', 'https://vault.azure.net']) {
    const body = (await (await fetch(`${url}/token?resource=${resource}`, { headers })).json()) as {
      access_token: string
    }
    tokens.push(body.access_token)
  }
  // Failures too: wrong secret, upstream errors, retries.
  await fetch(`${url}/token?resource=x`, { headers: { Metadata: 'true', 'X-IDENTITY-HEADER': secret + 'x' } })
  emulator.state.faults.script('imds.token', [
    { status: 500 },
    { status: 400, body: { error: 'invalid_request', error_description: 'Identity not found' } },
  ])
  await fetch(`${url}/token?resource=https://storage.azure.com`, { headers })
  proc.child.kill('SIGTERM')
  await proc.exit
  const output = proc.stdout.join('\n') + proc.stderr.join('')
  assert.ok(proc.stdout.length > 5, 'the daemon logged')
  assert.ok(!output.includes(secret), 'caller secret leaked')
  for (const token of tokens) {
    assert.ok(token.length > 100)
    assert.ok(!output.includes(token), 'access token leaked')
    assert.ok(!output.includes(token.split('.')[2]!), 'token signature leaked')
  }
  assert.doesNotMatch(output, /eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}/, 'something JWT-shaped was logged')
  assert.doesNotMatch(output, /PRIVATE KEY/)
})
