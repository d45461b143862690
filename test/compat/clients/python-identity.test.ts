import { test } from 'node:test'
import { join } from 'node:path'
import { startStack } from '../../support/stack.ts'
import {
  assertDaemonToken,
  assertRoute,
  configYaml,
  dialectEnv,
  needsSecret,
  runClient,
  stackView,
  type Dialect,
} from './harness.ts'

/**
 * Debian's unmodified Python azure-identity (python3-azure; `/usr/bin/python3`, not a pyenv
 * python on PATH) through every managed identity dialect it speaks, chosen by environment alone:
 * ManagedIdentityCredential with IDENTITY_ENDPOINT + IDENTITY_HEADER (App Service 2019-08-01,
 * `client_id`), MSI_ENDPOINT + MSI_SECRET (AzureMLCredential: 2017-09-01, header `secret`,
 * `clientid`), MSI_ENDPOINT alone (CloudShellCredential: form POST, `client_id` in the body) and
 * AZURE_POD_IDENTITY_AUTHORITY_HOST (ImdsCredential).
 */
const python = '/usr/bin/python3'
const client = join(import.meta.dirname, 'python-identity.py')
const resource = 'https://management.azure.com'

const dialects: Dialect[] = ['app-service-2019', 'app-service-2017', 'cloud-shell', 'imds']

for (const dialect of dialects) {
  for (const assigned of ['system', 'user'] as const) {
    test(`azure-identity ${dialect}: ${assigned}-assigned`, async (t) => {
      const stack = await startStack(t, {
        configYaml: configYaml(needsSecret(dialect) ? { secret: true, t } : { secret: false }),
      })
      const identity = stack.emulator.state.managedIdentities[assigned === 'system' ? 0 : 1]!
      const args = [client, resource, ...(assigned === 'user' ? [identity.clientId] : [])]
      const result = await runClient(python, args, dialectEnv(stack, dialect), { timeoutMs: 60_000 })
      await assertDaemonToken(stackView(stack), result, {
        identity: assigned === 'system' ? 'mi' : 'uami',
        resource,
        appid: identity.clientId,
      })
      await assertRoute(stackView(stack), dialect)
    })
  }
}
