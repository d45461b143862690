import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { startStack, type Stack } from '../../support/stack.ts'
import { armAudience, azBaseEnv, azCommand, azConfigDir, azResult, startArm } from './azure-cli-env.ts'
import {
  assertDaemonToken,
  assertRoute,
  configYaml,
  dialectEnv,
  runClient,
  stackView,
  type Dialect,
} from './harness.ts'

/**
 * Debian's unmodified Azure CLI (azure-cli 2.45, msrestazure): `az login --identity [--username
 * <client id>]`, then `az account get-access-token --resource …`, through every managed identity
 * dialect it speaks, chosen by environment alone (msrestazure.azure_active_directory):
 * - MSI_ENDPOINT: the Cloud Shell dialect (form POST with `Metadata: true`, `client_id` in the body),
 *   also when MSI_SECRET is set but APPSETTING_WEBSITE_SITE_NAME is not;
 * - MSI_ENDPOINT + MSI_SECRET + APPSETTING_WEBSITE_SITE_NAME (as App Service sets them): App Service
 *   2017-09-01 (`GET {MSI_ENDPOINT}/?resource=…&api-version=2017-09-01[&clientid=…]`, header `secret`);
 * - nothing: the fixed http://169.254.169.254, through a packet redirect (imds-redirect.test.ts).
 * This CLI does not read IDENTITY_ENDPOINT / IDENTITY_HEADER. Resource Manager is a stand-in on
 * loopback (azure-cli-env.ts).
 */
const resource = 'https://management.azure.com'

type AzDialect = Extract<Dialect, 'app-service-2017' | 'cloud-shell'>

async function azEnv(stack: Stack, dialect: AzDialect, armUrl: string): Promise<Record<string, string>> {
  return {
    ...dialectEnv(stack, dialect),
    // What App Service sets besides MSI_ENDPOINT + MSI_SECRET; msrestazure reads it to pick 2017-09-01.
    ...(dialect === 'app-service-2017' ? { APPSETTING_WEBSITE_SITE_NAME: 'emulated-site' } : {}),
    ...azBaseEnv(await azConfigDir(stack.dir, armUrl), join(stack.dir, 'emulator-ca.pem')),
  }
}

/** Runs az with `env`, JSON output. */
async function az(args: string[], env: Record<string, string>) {
  return azResult(await runClient(azCommand, [...args, '--output', 'json'], env, { timeoutMs: 90_000 }))
}

for (const dialect of ['cloud-shell', 'app-service-2017'] as const satisfies AzDialect[]) {
  for (const assigned of ['system', 'user'] as const) {
    const username = assigned === 'user' ? ' --username <client id>' : ''
    test(`az ${dialect}: login --identity${username}, get-access-token`, async (t) => {
      const stack = await startStack(t, {
        configYaml: configYaml(dialect === 'app-service-2017' ? { secret: true, t } : { secret: false }),
      })
      const daemon = stackView(stack)
      const identity = stack.emulator.state.managedIdentities[assigned === 'system' ? 0 : 1]!
      const identityName = assigned === 'system' ? 'mi' : 'uami'
      const arm = await startArm(stack.emulator.state)
      t.after(() => arm.close())
      const env = await azEnv(stack, dialect, arm.url)

      const login = await az(
        ['login', '--identity', ...(assigned === 'user' ? ['--username', identity.clientId] : [])],
        env,
      )
      assert.equal(login.status, 0, `${login.error ?? ''}\n${login.stderr.slice(-2000)}`)
      // az listed the subscriptions with the daemon's token for Resource Manager's audience.
      assert.ok(arm.tokens.length > 0, 'az called Resource Manager')
      const armToken = { status: 0, token: arm.tokens.at(-1)!, stderr: '' }
      await assertDaemonToken(daemon, armToken, {
        identity: identityName,
        resource: armAudience,
        appid: identity.clientId,
      })

      const token = await az(['account', 'get-access-token', '--resource', resource], env)
      await assertDaemonToken(daemon, token, { identity: identityName, resource, appid: identity.clientId })
      assert.equal(token['subscription'], arm.subscriptionId)
      await assertRoute(daemon, dialect)
    })
  }
}

test('az with MSI_ENDPOINT + MSI_SECRET but no APPSETTING_WEBSITE_SITE_NAME: a secret-less POST, refused', async (t) => {
  // msrestazure picks App Service only when APPSETTING_WEBSITE_SITE_NAME is set; otherwise it sends
  // the Cloud Shell form POST to MSI_ENDPOINT without the secret, which /msi/token must not serve.
  const stack = await startStack(t, { configYaml: configYaml({ secret: true, t }) })
  const arm = await startArm(stack.emulator.state)
  t.after(() => arm.close())
  const env = {
    ...dialectEnv(stack, 'app-service-2017'),
    ...azBaseEnv(await azConfigDir(stack.dir, arm.url), join(stack.dir, 'emulator-ca.pem')),
  }
  const login = await az(['login', '--identity'], env)
  assert.notEqual(login.status, 0)
  const requests = stack.logs.records.filter((r) => r['msg'] === 'request')
  assert.ok(requests.length > 0)
  for (const r of requests) {
    assert.equal(r['method'], 'POST')
    assert.match(String(r['path']), /^\/msi\/token\/?$/)
    assert.ok(Number(r['status']) >= 400, `refused: ${JSON.stringify(r)}`)
  }
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0, 'nothing went upstream')
  assert.equal(arm.tokens.length, 0)
})
