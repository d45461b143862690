import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startStack } from '../../support/stack.ts'
import {
  assertDaemonToken,
  assertRoute,
  buildAdalToken,
  configYaml,
  dialectEnv,
  needsSecret,
  runClient,
  stackView,
  type Dialect,
} from './harness.ts'

/**
 * Go adal (Debian's golang-github-azure-go-autorest-dev, the auth library of Debian's Go Azure
 * SDK), unmodified, through every dialect it speaks: `adal.NewServicePrincipalTokenFromManagedIdentity`
 * picks App Service 2017-09-01 (GET, header `secret`, `clientid`) when MSI_ENDPOINT and MSI_SECRET
 * are set, Cloud Shell (form POST, `client_id` in the body) when MSI_ENDPOINT alone is, and else
 * the fixed http://169.254.169.254 (reached through a packet redirect in
 * imds-redirect.test.ts). This adal has no IDENTITY_ENDPOINT (2019-08-01) support.
 *
 * The program (go/adal-token) is built here, offline (harness.ts buildAdalToken).
 */
const resource = 'https://management.azure.com'
let work: string
let binary: string

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'sidecar-go-adal-'))
  binary = await buildAdalToken(work)
})
after(() => rm(work, { recursive: true, force: true }))

for (const dialect of ['app-service-2017', 'cloud-shell'] as const satisfies Dialect[]) {
  for (const assigned of ['system', 'user'] as const) {
    test(`go adal ${dialect}: ${assigned}-assigned`, async (t) => {
      const stack = await startStack(t, {
        configYaml: configYaml(needsSecret(dialect) ? { secret: true, t } : { secret: false }),
      })
      const identity = stack.emulator.state.managedIdentities[assigned === 'system' ? 0 : 1]!
      const env = dialectEnv(stack, dialect)
      const result = await runClient(
        binary,
        [resource, ...(assigned === 'user' ? [identity.clientId] : [])],
        env,
        {
          timeoutMs: 30_000,
        },
      )
      await assertDaemonToken(stackView(stack), result, {
        identity: assigned === 'system' ? 'mi' : 'uami',
        resource,
        appid: identity.clientId,
      })
      await assertRoute(stackView(stack), dialect)
    })
  }
}

test('go adal: GetMSIEndpoint names the endpoint from MSI_ENDPOINT, else the fixed IMDS address', async (t) => {
  const stack = await startStack(t, { configYaml: configYaml({ secret: false }) })
  const cloudShell = dialectEnv(stack, 'cloud-shell')
  const viaEnv = await runClient(binary, ['--endpoint'], cloudShell, { timeoutMs: 30_000 })
  assert.equal(viaEnv.endpoint, cloudShell['MSI_ENDPOINT'])
  // IDENTITY_ENDPOINT (App Service 2019-08-01) is not a variable this adal reads.
  const ignored = await runClient(binary, ['--endpoint'], dialectEnv(stack, 'app-service-2019'), {
    timeoutMs: 30_000,
  })
  assert.equal(ignored.endpoint, 'http://169.254.169.254/metadata/identity/oauth2/token')
})
