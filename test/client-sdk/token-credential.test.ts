import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { ServerResponse } from 'node:http'
import type { AccessToken, TokenCredential } from '@azure/core-auth'
import { ChainedTokenCredential } from '@azure/identity'
import { decodeJwt } from 'jose'
import { CredentialUnavailableError, SidecarClient, SidecarClientError } from '../../client-sdk/src/index.ts'
import { startStack } from '../support/stack.ts'
import { demoResourcePipeline, startHttpServer, tokenJson } from './support.ts'

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

// In a chain (@azure/identity's ChainedTokenCredential, the real one): a sidecar that cannot serve
// the request raises CredentialUnavailableError, so the chain tries the next credential; any other
// failure stops the chain, as @azure/identity's own credentials do.

/** The next credential in a chain: it answers, and counts how often it was asked. */
function nextInChain(): TokenCredential & { asked: number } {
  return {
    asked: 0,
    async getToken() {
      this.asked++
      return { token: 'from-the-next-credential', expiresOnTimestamp: Date.now() + 3600_000 }
    },
  }
}

/** A port nothing listens on (bound, then closed). */
async function closedPort(t: TestContext): Promise<string> {
  const { server, url } = await startHttpServer(t, () => {})
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return url
}

test('an unreachable sidecar raises CredentialUnavailableError, so ChainedTokenCredential moves on', async (t) => {
  const sidecar = new SidecarClient({ endpoint: await closedPort(t), env: {} })
  t.after(() => sidecar.close())
  const error = await sidecar
    .tokenCredential()
    .getToken(demoScope)
    .catch((e: unknown) => e)
  assert.ok(error instanceof CredentialUnavailableError)
  assert.ok(error instanceof SidecarClientError, 'still a SidecarClientError')
  assert.equal(error.name, 'CredentialUnavailableError')
  assert.equal(error.code, 'connection_failed')
  assert.match(error.message, /Cannot reach the sidecar at http:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/)

  const next = nextInChain()
  const chain = new ChainedTokenCredential(sidecar.tokenCredential(), next)
  assert.equal((await chain.getToken(demoScope))?.token, 'from-the-next-credential')
  assert.equal(next.asked, 1)
})

test('a sidecar that does not answer in timeoutMs raises CredentialUnavailableError (timeout)', async (t) => {
  const held: ServerResponse[] = []
  const { url } = await startHttpServer(t, (_req, res) => void held.push(res))
  const sidecar = new SidecarClient({ endpoint: url, env: {}, timeoutMs: 300 })
  t.after(() => sidecar.close())
  const next = nextInChain()
  const chain = new ChainedTokenCredential(sidecar.tokenCredential(), next)
  assert.equal((await chain.getToken(demoScope))?.token, 'from-the-next-credential')
  const error = await sidecar
    .tokenCredential()
    .getToken(demoScope)
    .catch((e: unknown) => e)
  assert.ok(error instanceof CredentialUnavailableError)
  assert.equal(error.code, 'timeout')
  assert.match(error.message, /within 300 ms/)
})

test('requestOptions.timeout bounds the call (the client timeoutMs is longer)', async (t) => {
  const held: ServerResponse[] = []
  const { url } = await startHttpServer(t, (_req, res) => void held.push(res))
  const sidecar = new SidecarClient({ endpoint: url, env: {}, timeoutMs: 60_000 })
  t.after(() => sidecar.close())
  const credential = sidecar.tokenCredential()
  const started = performance.now()
  const error = await credential
    .getToken(demoScope, { requestOptions: { timeout: 250 } })
    .catch((e: unknown) => e)
  const waited = performance.now() - started
  assert.ok(error instanceof CredentialUnavailableError)
  assert.equal(error.code, 'timeout')
  assert.match(error.message, /within 250 ms/)
  assert.ok(waited >= 240 && waited < 10_000, `waited ${waited} ms`)
  // Through a chain, the same bound lets the next credential answer.
  const next = nextInChain()
  const chained = await new ChainedTokenCredential(credential, next).getToken(demoScope, {
    requestOptions: { timeout: 250 },
  })
  assert.equal(chained?.token, 'from-the-next-credential')
  // A malformed timeout is the caller's error, not "unavailable".
  await assert.rejects(credential.getToken(demoScope, { requestOptions: { timeout: -1 } }), {
    name: 'SidecarClientError',
    code: 'invalid_argument',
  })
  // 0 means no per-call bound (Azure's convention): this caller waits for the request under way
  // (the first call's, which only stopped waiting), bounded by the client's timeoutMs alone.
  const answered = credential.getToken(demoScope, { requestOptions: { timeout: 0 } })
  await new Promise((resolve) => setTimeout(resolve, 400))
  assert.equal(held.length, 1, 'one request reached the sidecar; the callers shared it')
  held[0]!.setHeader('content-type', 'application/json')
  held[0]!.end(JSON.stringify(tokenJson()))
  assert.equal((await answered)?.token, 'fake-access-token')
})

test('an identity the sidecar does not have raises CredentialUnavailableError; other failures stop the chain', async (t) => {
  const stack = await startStack(t, {
    configYaml: () =>
      'defaultIdentity: mi\nidentities:\n  mi:\n    managedIdentity: {}\n  pop:\n    managedIdentity: {}\n    protocolScheme: MTLS_POP\n',
  })
  const sidecar = new SidecarClient({ endpoint: stack.url, env: {} })
  t.after(() => sidecar.close())
  const error = await sidecar
    .tokenCredential({ identity: 'nobody' })
    .getToken(demoScope)
    .catch((e: unknown) => e)
  assert.ok(error instanceof CredentialUnavailableError)
  assert.equal(error.code, 'unknown_identity')
  assert.equal(error.status, 400)
  const next = nextInChain()
  const chain = new ChainedTokenCredential(sidecar.tokenCredential({ identity: 'nobody' }), next)
  assert.equal((await chain.getToken(demoScope))?.token, 'from-the-next-credential')

  // A Bearer-only consumer given an mtls_pop identity is a configuration error: the chain stops.
  const stopped = new ChainedTokenCredential(sidecar.tokenCredential({ identity: 'pop' }), next)
  await assert.rejects(stopped.getToken(demoScope), { name: 'SidecarClientError', code: 'bearer_required' })
  assert.equal(next.asked, 1)
})

test("tenantId is honoured when it is the tenant that issues the identity's tokens, else refused", async (t) => {
  const stack = await startStack(t)
  const sidecar = new SidecarClient({ endpoint: stack.url, env: {} })
  t.after(() => sidecar.close())
  const credential = sidecar.tokenCredential()
  const token = await credential.getToken(demoScope, { tenantId: stack.tenantId.toUpperCase() })
  assert.equal(token?.tokenType, 'Bearer')
  assert.equal(decodeJwt(token!.token)['tid'], stack.tenantId)

  const other = '72f988bf-86f1-41af-91ab-2d7cd011db47'
  const error = await credential.getToken(demoScope, { tenantId: other }).catch((e: unknown) => e)
  assert.ok(error instanceof CredentialUnavailableError)
  assert.equal(error.code, 'tenant_mismatch')
  assert.equal(
    error.message,
    `Tenant ${other} was asked for, and identity "mi"'s tokens are issued by tenant ${stack.tenantId}; ` +
      'the sidecar serves each identity from its own tenant and cannot switch (configure an identity in that tenant)',
  )
  assert.ok(!error.message.includes(token!.token))
  // In a chain, the next credential (one configured for that tenant) answers.
  const next = nextInChain()
  const chained = await new ChainedTokenCredential(credential, next).getToken(demoScope, { tenantId: other })
  assert.equal(chained?.token, 'from-the-next-credential')

  await assert.rejects(credential.getToken(demoScope, { tenantId: '' }), { code: 'invalid_argument' })
})

test('a token that does not name its tenant is refused when a tenantId is asked for', async (t) => {
  const { url } = await startHttpServer(t, (_req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify(tokenJson({ access_token: 'opaque-not-a-jwt' })))
  })
  const sidecar = new SidecarClient({ endpoint: url, env: {} })
  t.after(() => sidecar.close())
  const credential = sidecar.tokenCredential()
  assert.equal((await credential.getToken(demoScope))?.token, 'opaque-not-a-jwt')
  await assert.rejects(credential.getToken(demoScope, { tenantId: 'contoso.onmicrosoft.com' }), {
    name: 'CredentialUnavailableError',
    code: 'tenant_mismatch',
    message: /does not say which tenant issued it/,
  })
})

test('signed-HTTP-request PoP options are refused, not answered with a Bearer token', async (t) => {
  const stack = await startStack(t)
  const sidecar = new SidecarClient({ endpoint: stack.url, env: {} })
  t.after(() => sidecar.close())
  await assert.rejects(
    sidecar.tokenCredential().getToken(demoScope, {
      proofOfPossessionOptions: { nonce: 'n', resourceRequestMethod: 'GET', resourceRequestUrl: 'https://x' },
    }),
    { name: 'SidecarClientError', code: 'invalid_argument', message: /proofOfPossessionOptions/ },
  )
})
