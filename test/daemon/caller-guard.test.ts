import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { json, startStack } from '../support/stack.ts'
import { waitUntil } from '../support/wait-until.ts'

/** Raw request so the test controls Host exactly (fetch always sets it from the URL). */
async function raw(url: string, headers: Record<string, string>) {
  const res = await request(url, { headers })
  return {
    status: res.statusCode,
    body: (await res.body.json()) as Record<string, any>,
    headers: res.headers,
  }
}

test('token routes demand Metadata: true (400, worded as IMDS words it)', async (t) => {
  const stack = await startStack(t)
  for (const headers of [{}, { Metadata: 'false' }, { Metadata: '' }]) {
    const res = await fetch(`${stack.url}/token?resource=https://management.azure.com`, { headers })
    assert.equal(res.status, 400)
    const body = await json(res)
    assert.equal(body.error, 'invalid_request')
    assert.equal(body.error_description, 'Required metadata header not specified')
  }
  assert.equal(
    (await stack.get('/token?resource=https://management.azure.com', { Metadata: 'True' })).status,
    200,
  )
  assert.equal(stack.emulator.state.calls.count('imds.token'), 1)
})

test('a Host that does not name the sidecar is refused (DNS rebinding)', async (t) => {
  const stack = await startStack(t)
  const port = new URL(stack.url).port
  const url = `${stack.url}/token?resource=https://management.azure.com`
  for (const host of [`evil.example:${port}`, 'evil.example', `169.254.169.254:${port}`, '', 'a:b:c']) {
    const res = await raw(url, { Metadata: 'true', Host: host })
    assert.equal(res.status, 403, `Host: ${host}`)
    assert.equal(res.body.error, 'forbidden')
  }
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'localhost', `127.0.0.1`]) {
    assert.equal((await raw(url, { Metadata: 'true', Host: host })).status, 200, `Host: ${host}`)
  }
})

test('X-Forwarded-For is refused', async (t) => {
  const stack = await startStack(t)
  const res = await stack.get('/token?resource=https://management.azure.com', {
    'X-Forwarded-For': '10.0.0.1',
  })
  assert.equal(res.status, 403)
  assert.equal((await json(res)).error, 'forbidden')
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0)
})

test('with callers.secretFile, X-IDENTITY-HEADER must match (401 otherwise)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-secret-'))
  const secretFile = join(dir, 'identity-header')
  writeFileSync(secretFile, 's3cr3t-value\n', { mode: 0o600 })
  const stack = await startStack(t, {
    configYaml: () => `callers:\n  secretFile: ${secretFile}\nidentities:\n  mi:\n    managedIdentity: {}\n`,
  })
  const path = '/token?resource=https://management.azure.com'
  for (const headers of [
    {},
    { 'X-IDENTITY-HEADER': 'wrong' },
    { 'X-IDENTITY-HEADER': 's3cr3t-valu' },
    { 'X-IDENTITY-HEADER': 's3cr3t-value-and-more' },
  ]) {
    const res = await stack.get(path, headers)
    assert.equal(res.status, 401)
    const body = await json(res)
    assert.equal(body.error, 'unauthorized')
    assert.doesNotMatch(JSON.stringify(body), /s3cr3t/)
  }
  assert.equal((await stack.get(path, { 'X-IDENTITY-HEADER': 's3cr3t-value' })).status, 200)
  assert.doesNotMatch(stack.logs.text, /s3cr3t/)
})

test('callers.secretFile with two lines (a rotation): both secrets pass on every route', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-secret-'))
  const secretFile = join(dir, 'identity-header')
  writeFileSync(secretFile, 'old-s3cret\nnew-s3cret\n', { mode: 0o600 })
  const stack = await startStack(t, {
    configYaml: () => `callers:\n  secretFile: ${secretFile}\nidentities:\n  mi:\n    managedIdentity: {}\n`,
  })
  const token = '/token?resource=https://management.azure.com'
  const msi = '/msi/token?api-version=2019-08-01&resource=https://management.azure.com'
  for (const secret of ['old-s3cret', 'new-s3cret']) {
    assert.equal((await stack.get(token, { 'X-IDENTITY-HEADER': secret })).status, 200, secret)
    assert.equal((await stack.get(msi, { 'X-IDENTITY-HEADER': secret })).status, 200, secret)
  }
  for (const wrong of ['old-s3cret\\nnew-s3cret', 'other', ''])
    assert.equal((await stack.get(token, { 'X-IDENTITY-HEADER': wrong })).status, 401, wrong)
  assert.doesNotMatch(stack.logs.text, /s3cret/)
})

test('a secret file replaced by a FIFO: routes keep answering (401), never hang', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-secret-'))
  const secretFile = join(dir, 'identity-header')
  writeFileSync(secretFile, 's3cret\n', { mode: 0o600 })
  const stack = await startStack(t, {
    configYaml: () => `callers:\n  secretFile: ${secretFile}\nidentities:\n  mi:\n    managedIdentity: {}\n`,
  })
  const token = '/token?resource=https://management.azure.com'
  assert.equal((await stack.get(token, { 'X-IDENTITY-HEADER': 's3cret' })).status, 200)
  rmSync(secretFile)
  execFileSync('mkfifo', [secretFile])
  // Checked at most once a second, off the request path: the next requests see the refusal.
  await waitUntil(
    async () => (await stack.get(token, { 'X-IDENTITY-HEADER': 's3cret' })).status === 401,
    'the FIFO is refused',
    { timeoutMs: 10_000 },
  )
  const line = stack.logs.records.find((r) => r['key'] === 'callers.secretFile')
  assert.match(
    String(line?.['msg']),
    /identity-header is not a regular file \(a FIFO\).*no caller secret is accepted/,
  )
})

test('callers.requireMetadataHeader: false lifts only the Metadata check', async (t) => {
  const stack = await startStack(t, {
    configYaml: () =>
      'callers:\n  requireMetadataHeader: false\nidentities:\n  mi:\n    managedIdentity: {}\n',
  })
  assert.equal((await fetch(`${stack.url}/token?resource=https://management.azure.com`)).status, 200)
  assert.equal(
    (await stack.get('/token?resource=https://management.azure.com', { 'X-Forwarded-For': '1.2.3.4' }))
      .status,
    403,
  )
})
