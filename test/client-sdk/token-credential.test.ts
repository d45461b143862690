import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { AccessToken, TokenCredential } from '@azure/core-auth'
import { SidecarClient, SidecarClientError } from '../../client-sdk/src/index.ts'
import { startStack } from '../support/stack.ts'
import { demoResourcePipeline } from './support.ts'

const demoScope = 'api://credential-sidecar-demo/.default'

test('tokenCredential() drives a real Azure SDK pipeline (bearerTokenAuthenticationPolicy) to the demo resource', async (t) => {
  const stack = await startStack(t)
  const sidecar = new SidecarClient({ endpoint: stack.url, env: {} })
  t.after(() => sidecar.close())
  // Compile-time: structurally a @azure/core-auth TokenCredential, without the SDK importing it.
  const credential: TokenCredential = sidecar.tokenCredential()

  const { sent, call } = demoResourcePipeline(t, stack, credential, demoScope)
  for (let i = 0; i < 2; i++) {
    const response = await call()
    assert.equal(response.status, 200)
    const body = JSON.parse(response.bodyAsText ?? '{}') as Record<string, unknown>
    assert.equal(body['scheme'], 'Bearer')
    assert.equal(body['appid'], stack.emulator.state.managedIdentities[0]!.clientId)
  }
  const token = await sidecar.getToken(demoScope)
  assert.deepEqual(sent, [`Bearer ${token.token}`, `Bearer ${token.token}`])
  assert.equal(stack.emulator.state.calls.count('imds.token'), 1)
})

test('tokenCredential().getToken returns the AccessToken shape', async (t) => {
  const stack = await startStack(t)
  const sidecar = new SidecarClient({ endpoint: stack.url, env: {} })
  t.after(() => sidecar.close())
  const token: AccessToken | null = await sidecar
    .tokenCredential()
    .getToken(['https://vault.azure.net/.default'])
  assert.ok(token)
  assert.deepEqual(Object.keys(token).sort(), [
    'expiresOnTimestamp',
    'refreshAfterTimestamp',
    'token',
    'tokenType',
  ])
  assert.equal(token.tokenType, 'Bearer')
  assert.ok(token.expiresOnTimestamp > Date.now() + 3000_000)
  assert.ok(token.refreshAfterTimestamp! < token.expiresOnTimestamp)
})

test('tokenCredential() refuses an mtls_pop identity with a clear error', async (t) => {
  const stack = await startStack(t, {
    configYaml: () =>
      'defaultIdentity: mi\nidentities:\n  mi:\n    managedIdentity: {}\n  pop:\n    managedIdentity: {}\n    protocolScheme: MTLS_POP\n',
  })
  const sidecar = new SidecarClient({ endpoint: stack.url, env: {} })
  t.after(() => sidecar.close())
  const error = await sidecar
    .tokenCredential({ identity: 'pop' })
    .getToken(demoScope)
    .catch((e: unknown) => e)
  assert.ok(error instanceof SidecarClientError)
  assert.equal(error.code, 'bearer_required')
  assert.match(error.message, /"pop" serves mtls_pop tokens/)
  // The client's default identity still works.
  assert.equal((await sidecar.tokenCredential().getToken(demoScope))?.tokenType, 'Bearer')
})

test('tokenCredential() respects abortSignal', async (t) => {
  const stack = await startStack(t)
  const sidecar = new SidecarClient({ endpoint: stack.url, env: {} })
  t.after(() => sidecar.close())
  const credential = sidecar.tokenCredential()
  await assert.rejects(credential.getToken(demoScope, { abortSignal: AbortSignal.abort() }), {
    name: 'AbortError',
  })
  const controller = new AbortController()
  const pending = credential.getToken(demoScope, { abortSignal: controller.signal })
  controller.abort()
  await assert.rejects(pending, { name: 'AbortError' })
})
