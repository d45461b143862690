import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeJwt } from 'jose'
import { SidecarClient, SidecarClientError } from '../../client-sdk/src/index.ts'
import { startStack } from '../support/stack.ts'
import { tokenRouteRequests } from './support.ts'

const arm = 'https://management.azure.com/.default'

test('getToken returns the AccessToken shape with ms timestamps', async (t) => {
  const stack = await startStack(t)
  const sidecar = new SidecarClient({ endpoint: stack.url, env: {} })
  t.after(() => sidecar.close())
  const before = Date.now()
  const token = await sidecar.getToken(arm)
  assert.equal(token.tokenType, 'Bearer')
  assert.equal(token.identity, 'mi')
  assert.equal(token.bindingCertificate, undefined)
  assert.equal(decodeJwt(token.token).aud, 'https://management.azure.com')
  // Milliseconds, a whole number of seconds (the wire carries seconds), about an hour ahead.
  assert.equal(token.expiresOnTimestamp % 1000, 0)
  assert.ok(token.expiresOnTimestamp > before + 3000_000 && token.expiresOnTimestamp <= before + 3600_000)
  assert.ok(token.refreshAfterTimestamp > before && token.refreshAfterTimestamp < token.expiresOnTimestamp)
  const raw = (await (await stack.get('/token?scope=https://management.azure.com/.default')).json()) as {
    expires_on: number
    refresh_on: number
  }
  assert.equal(token.expiresOnTimestamp, raw.expires_on * 1000)
  assert.equal(token.refreshAfterTimestamp, raw.refresh_on * 1000)
})

test('a resource URI and a one-element scope array are accepted; several scopes are not', async (t) => {
  const stack = await startStack(t)
  const sidecar = new SidecarClient({ endpoint: stack.url, env: {} })
  t.after(() => sidecar.close())
  const byResource = await sidecar.getToken('https://vault.azure.net')
  const byScope = await sidecar.getToken(['https://vault.azure.net/.default'])
  assert.equal(decodeJwt(byResource.token).aud, 'https://vault.azure.net')
  assert.equal(byResource.token, byScope.token) // the daemon names both the same cache entry
  await assert.rejects(sidecar.getToken([arm, 'https://vault.azure.net/.default']), {
    name: 'SidecarClientError',
    code: 'invalid_argument',
  })
  await assert.rejects(sidecar.getToken([]), { code: 'invalid_argument' })
  await assert.rejects(sidecar.getToken(''), { code: 'invalid_argument' })
})

test('tokens are cached per (identity, scope) until refresh_on, then asked for again', async (t) => {
  const stack = await startStack(t, {
    configYaml: (emu) =>
      `defaultIdentity: mi\nidentities:\n  mi:\n    managedIdentity: {}\n  uami:\n    managedIdentity:\n      userAssignedClientId: "${emu.state.managedIdentities[2]!.clientId}"\n`,
  })
  let now = Date.now()
  const sidecar = new SidecarClient({ endpoint: stack.url, env: {}, now: () => now })
  t.after(() => sidecar.close())
  const first = await sidecar.getToken(arm)
  for (let i = 0; i < 5; i++) assert.equal((await sidecar.getToken(arm)).token, first.token)
  assert.equal(await tokenRouteRequests(stack), 1)

  const other = await sidecar.getToken(arm, { identity: 'uami' })
  assert.notEqual(other.token, first.token)
  await sidecar.getToken('https://vault.azure.net/.default')
  assert.equal(await tokenRouteRequests(stack), 3)

  now = first.refreshAfterTimestamp - 1
  await sidecar.getToken(arm)
  assert.equal(await tokenRouteRequests(stack), 3)
  now = first.refreshAfterTimestamp
  await sidecar.getToken(arm)
  assert.equal(await tokenRouteRequests(stack), 4)

  await sidecar.getToken(arm, { forceRefresh: true })
  assert.equal(await tokenRouteRequests(stack), 5)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 3) // the daemon's cache served the rest
})

test('50 concurrent cold getToken calls make one request to the sidecar', async (t) => {
  const stack = await startStack(t)
  const sidecar = new SidecarClient({ endpoint: stack.url, env: {} })
  t.after(() => sidecar.close())
  const tokens = await Promise.all(Array.from({ length: 50 }, () => sidecar.getToken(arm)))
  assert.equal(new Set(tokens.map((x) => x.token)).size, 1)
  assert.equal(await tokenRouteRequests(stack), 1)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 1)
})

test("errors carry the sidecar's error code, status, description and correlation id", async (t) => {
  const stack = await startStack(t)
  const sidecar = new SidecarClient({ endpoint: stack.url, env: {} })
  t.after(() => sidecar.close())

  const unknown = await sidecar.getToken(arm, { identity: 'nobody' }).catch((e: unknown) => e)
  assert.ok(unknown instanceof SidecarClientError)
  assert.equal(unknown.code, 'unknown_identity')
  assert.equal(unknown.status, 400)
  assert.match(unknown.correlationId ?? '', /^[0-9a-f-]{36}$/)
  assert.match(unknown.message, /unknown_identity/)
  assert.match(unknown.message, new RegExp(unknown.correlationId!))

  const invalid = await sidecar.getToken('https://x.invalid').catch((e: unknown) => e)
  assert.ok(invalid instanceof SidecarClientError)
  assert.equal(invalid.code, 'invalid_resource')
  assert.equal(invalid.status, 400)
  assert.match(invalid.description ?? '', /AADSTS500011/)

  // Failures are not cached: the next call asks again.
  await assert.rejects(sidecar.getToken('https://x.invalid'), { code: 'invalid_resource' })
  assert.equal(await tokenRouteRequests(stack), 3)
})

test('the caller secret comes from the option or IDENTITY_HEADER and is sent as X-IDENTITY-HEADER', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sdk-secret-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const secretFile = join(dir, 'identity-header')
  writeFileSync(secretFile, 's3cret-value\n', { mode: 0o600 })
  const stack = await startStack(t, {
    configYaml: () => `callers:\n  secretFile: ${secretFile}\nidentities:\n  mi:\n    managedIdentity: {}\n`,
  })

  const none = new SidecarClient({ endpoint: stack.url, env: {} })
  const error = await none.getToken(arm).catch((e: unknown) => e)
  assert.ok(error instanceof SidecarClientError)
  assert.equal(error.code, 'unauthorized')
  assert.equal(error.status, 401)

  const wrong = new SidecarClient({ endpoint: stack.url, secret: 'wrong-secret', env: {} })
  const wrongError = await wrong.getToken(arm).catch((e: unknown) => e)
  assert.ok(wrongError instanceof SidecarClientError)
  assert.equal(wrongError.code, 'unauthorized')
  assert.ok(!wrongError.message.includes('wrong-secret'))

  const byOption = new SidecarClient({ endpoint: stack.url, secret: 's3cret-value', env: {} })
  assert.equal((await byOption.getToken(arm)).tokenType, 'Bearer')

  const byEnv = new SidecarClient({
    env: { CREDENTIAL_SIDECAR_ENDPOINT: stack.url, IDENTITY_HEADER: 's3cret-value' },
  })
  assert.equal((await byEnv.getToken(arm)).tokenType, 'Bearer')

  // The option wins over the environment.
  const both = new SidecarClient({
    endpoint: stack.url,
    secret: 's3cret-value',
    env: { IDENTITY_HEADER: 'stale' },
  })
  assert.equal((await both.getToken(arm)).tokenType, 'Bearer')
  await Promise.all([none, wrong, byOption, byEnv, both].map((c) => c.close()))
})

test('the default identity comes from the client option, a call may override it', async (t) => {
  const stack = await startStack(t, {
    configYaml: (emu) =>
      `defaultIdentity: mi\nidentities:\n  mi:\n    managedIdentity: {}\n  uami:\n    managedIdentity:\n      userAssignedClientId: "${emu.state.managedIdentities[2]!.clientId}"\n`,
  })
  const sidecar = new SidecarClient({ endpoint: stack.url, identity: 'uami', env: {} })
  t.after(() => sidecar.close())
  assert.equal((await sidecar.getToken(arm)).identity, 'uami')
  assert.equal((await sidecar.getToken(arm, { identity: 'mi' })).identity, 'mi')
})

test('a caller abort stops its wait without failing others sharing the request', async (t) => {
  const stack = await startStack(t)
  const sidecar = new SidecarClient({ endpoint: stack.url, env: {} })
  t.after(() => sidecar.close())
  const controller = new AbortController()
  const aborted = sidecar.getToken(arm, { abortSignal: controller.signal })
  const other = sidecar.getToken(arm)
  controller.abort()
  await assert.rejects(aborted, { name: 'AbortError' })
  assert.equal((await other).tokenType, 'Bearer')
})
