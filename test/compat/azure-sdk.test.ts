import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeJwt } from 'jose'
import { json, startStack, type Stack } from '../support/stack.ts'

/**
 * Unmodified Azure SDKs (@azure/identity, @azure/msal-node) against the daemon's compat routes.
 * Each case runs in its own process (`sdk-client.ts`): msal-node picks the managed identity source
 * from the environment once per process and keeps it, with its token cache, in static fields.
 */
const client = join(import.meta.dirname, 'sdk-client.ts')
const resource = 'https://management.azure.com'
const secret = 'sdk-identity-header-value'

type Sdk = 'identity' | 'msal' | 'msal-cae' | 'default'

interface SdkResult {
  status: number
  token?: string
  expiresOn?: number
  /** msal-cae: the token before the claims challenge. */
  firstToken?: string
  error?: string
}

/**
 * Runs the SDK with exactly the environment given (plus PATH and HOME): no proxy settings, no
 * AZURE_* or IDENTITY_* variables from the outer environment, nothing that could send a request
 * anywhere but the loopback daemon.
 */
function runSdk(sdk: Sdk, env: Record<string, string>, clientId?: string): Promise<SdkResult> {
  const args = [client, sdk, resource, ...(clientId ? [clientId] : [])]
  const childEnv = { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? tmpdir(), ...env }
  return new Promise((resolve) => {
    execFile(process.execPath, args, { env: childEnv, timeout: 60_000 }, (error, stdout) => {
      const status = error ? (typeof error.code === 'number' ? error.code : 1) : 0
      let parsed: Partial<SdkResult> = {}
      try {
        parsed = JSON.parse(stdout) as Partial<SdkResult>
      } catch {
        parsed = { error: `unparseable output: ${stdout.slice(0, 200)}` }
      }
      resolve({ status, ...parsed })
    })
  })
}

const imdsEnv = (stack: Stack) => ({ AZURE_POD_IDENTITY_AUTHORITY_HOST: stack.url })
const appServiceEnv = (stack: Stack, header = secret) => ({
  IDENTITY_ENDPOINT: `${stack.url}/msi/token`,
  IDENTITY_HEADER: header,
})

function withSecretYaml(extra = ''): () => string {
  const file = join(mkdtempSync(join(tmpdir(), 'sidecar-secret-')), 'identity-header')
  writeFileSync(file, secret, { mode: 0o600 })
  return () => `callers:\n  secretFile: ${file}\nidentities:\n  mi:\n    managedIdentity: {}\n${extra}`
}

const userAssignedYaml = (stack: { state: { managedIdentities: { clientId: string }[] } }) =>
  `  uami:\n    managedIdentity:\n      userAssignedClientId: "${stack.state.managedIdentities[1]!.clientId}"\n`

/** The token the SDK got is the daemon's (same cache as /token) and names the expected identity. */
async function assertDaemonToken(stack: Stack, result: SdkResult, identity: string, appid: string) {
  assert.equal(result.status, 0, result.error)
  assert.ok(result.token)
  const claims = decodeJwt(result.token)
  assert.equal(claims.aud, resource)
  assert.equal(claims['appid'], appid)
  // The secret header is ignored by a daemon without callers.secretFile.
  const served = await json(
    await stack.get(`/token?resource=${resource}&identity=${identity}`, { 'X-IDENTITY-HEADER': secret }),
  )
  assert.equal(result.token, served.access_token, 'the SDK got the daemon-cached token')
  assert.ok(
    Math.abs((result.expiresOn ?? 0) - served.expires_on * 1000) <= 5000,
    'expiry read from expires_on',
  )
}

for (const sdk of ['identity', 'msal', 'default'] as const) {
  test(`${sdk}: system-assigned via AZURE_POD_IDENTITY_AUTHORITY_HOST (IMDS route)`, async (t) => {
    const stack = await startStack(t)
    const result = await runSdk(sdk, imdsEnv(stack))
    await assertDaemonToken(stack, result, 'mi', stack.emulator.state.managedIdentities[0]!.clientId)
    assert.equal(stack.emulator.state.calls.count('imds.token'), 1)
  })
}

for (const sdk of ['identity', 'msal'] as const) {
  test(`${sdk}: user-assigned clientId via AZURE_POD_IDENTITY_AUTHORITY_HOST (IMDS route)`, async (t) => {
    const stack = await startStack(t, {
      configYaml: (emu) => `identities:\n  mi:\n    managedIdentity: {}\n${userAssignedYaml(emu)}`,
    })
    const uami = stack.emulator.state.managedIdentities[1]!
    const result = await runSdk(sdk, imdsEnv(stack), uami.clientId)
    await assertDaemonToken(stack, result, 'uami', uami.clientId)
  })

  test(`${sdk}: system-assigned via IDENTITY_ENDPOINT + IDENTITY_HEADER (App Service route)`, async (t) => {
    const stack = await startStack(t, { configYaml: withSecretYaml() })
    const result = await runSdk(sdk, appServiceEnv(stack))
    await assertDaemonToken(stack, result, 'mi', stack.emulator.state.managedIdentities[0]!.clientId)
    assert.doesNotMatch(stack.logs.text, new RegExp(secret))
  })

  test(`${sdk}: user-assigned clientId via IDENTITY_ENDPOINT + IDENTITY_HEADER (App Service route)`, async (t) => {
    const stack = await startStack(t, { configYaml: (emu) => withSecretYaml(userAssignedYaml(emu))() })
    const uami = stack.emulator.state.managedIdentities[1]!
    const result = await runSdk(sdk, appServiceEnv(stack), uami.clientId)
    await assertDaemonToken(stack, result, 'uami', uami.clientId)
  })
}

test("msal: a wrong IDENTITY_HEADER fails with the daemon's reason, and no token is fetched", async (t) => {
  const stack = await startStack(t, { configYaml: withSecretYaml() })
  const result = await runSdk('msal', appServiceEnv(stack, 'not-the-secret'))
  assert.notEqual(result.status, 0)
  assert.match(result.error ?? '', /unauthorized|X-IDENTITY-HEADER/)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0)
})

test('identity: an unknown user-assigned clientId fails with "Identity not found"', async (t) => {
  const stack = await startStack(t)
  const result = await runSdk('identity', imdsEnv(stack), stack.emulator.state.managedIdentities[2]!.clientId)
  assert.notEqual(result.status, 0)
  assert.match(result.error ?? '', /Identity not found/)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0)
})

test('msal-node with clientCapabilities and a claims challenge: xms_cc reaches the daemon and goes upstream', async (t) => {
  const stack = await startStack(t)
  const result = await runSdk('msal-cae', imdsEnv(stack))
  assert.equal(result.status, 0, result.error)
  // msal-node sent xms_cc=cp1 on both calls; the daemon passed it to IMDS on its cache miss.
  assert.deepEqual(stack.emulator.state.calls.caeParameters('imds.token'), [{ xms_cc: 'cp1' }])
  // msal-node sends the refused token's hash only to Service Fabric, so to an IMDS-style endpoint
  // a claims request looks like a first one (upstream-protocol.md §7): the daemon serves its cache.
  // Applications that need the refresh use /token?claims=… or the SDK (test/client-sdk/cae.test.ts).
  assert.equal(result.token, result.firstToken)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 1)
})
