import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:https'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { decodeJwt } from 'jose'
import { issueLoopbackServerCertificate } from '../../../sidecar/src/emulator/entra.ts'
import { closeServer, listenOnLoopback } from '../../../sidecar/src/emulator/loopback-server.ts'
import { startStack, type Stack } from '../../support/stack.ts'
import {
  assertDaemonToken,
  assertRoute,
  configYaml,
  dialectEnv,
  runClient,
  type ClientResult,
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
 * - nothing: the fixed http://169.254.169.254 (only through a packet redirect). This CLI does not
 *   read IDENTITY_ENDPOINT / IDENTITY_HEADER.
 *
 * `az login --identity` always lists subscriptions on the cloud's Resource Manager
 * (`--allow-no-subscriptions` only accepts an empty list), so each case gives az a private
 * AZURE_CONFIG_DIR whose active cloud names a stand-in Resource Manager on loopback (https, trusted
 * through REQUESTS_CA_BUNDLE), which also checks that az calls it with the daemon's token.
 */
const resource = 'https://management.azure.com'
/** The audience az logs in for and calls Resource Manager with (the cloud's active_directory_resource_id). */
const armAudience = 'https://management.core.windows.net/'

interface Arm {
  url: string
  /** Bearer tokens Resource Manager was called with. */
  tokens: string[]
  subscriptionId: string
}

/** A stand-in Resource Manager that lists one subscription in the token's tenant. */
async function startArm(t: TestContext, stack: Stack): Promise<Arm> {
  const { cert, key } = await issueLoopbackServerCertificate(stack.emulator.state)
  const arm: Arm = { url: '', tokens: [], subscriptionId: randomUUID() }
  const server = createServer({ cert, key }, (req, res) => {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1]
    if (token) arm.tokens.push(token)
    if (!token || !req.url?.startsWith('/subscriptions?')) {
      res.writeHead(token ? 404 : 401, { 'content-type': 'application/json' })
      res.end(
        JSON.stringify({ error: { code: token ? 'NotFound' : 'AuthenticationFailed', message: req.url } }),
      )
      return
    }
    const tenantId = String(decodeJwt(token)['tid'])
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(
      JSON.stringify({
        value: [
          {
            id: `/subscriptions/${arm.subscriptionId}`,
            subscriptionId: arm.subscriptionId,
            tenantId,
            displayName: 'Emulated subscription',
            state: 'Enabled',
            subscriptionPolicies: {
              locationPlacementId: 'Public_2014-09-01',
              quotaId: 'x',
              spendingLimit: 'Off',
            },
            authorizationSource: 'RoleBased',
          },
        ],
      }),
    )
  })
  arm.url = await listenOnLoopback(server, 'https')
  t.after(() => closeServer(server))
  return arm
}

/** A private AZURE_CONFIG_DIR whose active cloud is `Emulated` (Resource Manager = `arm`), no telemetry. */
async function azConfigDir(t: TestContext, stack: Stack, arm: Arm): Promise<string> {
  const dir = await mkdtemp(join(stack.dir, 'azure-config-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  await writeFile(
    join(dir, 'config'),
    '[cloud]\nname = Emulated\n\n[core]\ncollect_telemetry = no\nfirst_run = no\noutput = json\n',
  )
  await writeFile(
    join(dir, 'clouds.config'),
    [
      '[Emulated]',
      `endpoint_resource_manager = ${arm.url}/`,
      'endpoint_active_directory = https://login.microsoftonline.com',
      `endpoint_active_directory_resource_id = ${armAudience}`,
      'endpoint_active_directory_graph_resource_id = https://graph.windows.net/',
      'endpoint_management = https://management.core.windows.net/',
      'profile = latest',
      '',
    ].join('\n'),
  )
  return dir
}

type AzDialect = Extract<Dialect, 'app-service-2017' | 'cloud-shell'>

function azEnv(stack: Stack, dialect: AzDialect, configDir: string, caFile: string): Record<string, string> {
  return {
    ...dialectEnv(stack, dialect),
    // What App Service sets besides MSI_ENDPOINT + MSI_SECRET; msrestazure reads it to pick 2017-09-01.
    ...(dialect === 'app-service-2017' ? { APPSETTING_WEBSITE_SITE_NAME: 'emulated-site' } : {}),
    AZURE_CONFIG_DIR: configDir,
    AZURE_CORE_COLLECT_TELEMETRY: 'no',
    REQUESTS_CA_BUNDLE: caFile,
  }
}

async function az(
  args: string[],
  env: Record<string, string>,
): Promise<ClientResult & Record<string, unknown>> {
  return runClient('az', [...args, '--output', 'json'], env, { timeoutMs: 90_000 }) as Promise<
    ClientResult & Record<string, unknown>
  >
}

for (const dialect of ['cloud-shell', 'app-service-2017'] as const satisfies AzDialect[]) {
  for (const assigned of ['system', 'user'] as const) {
    test(`az ${dialect}: login --identity${assigned === 'user' ? ' --username <client id>' : ''}, get-access-token`, async (t) => {
      const stack = await startStack(t, {
        configYaml: configYaml({ secret: dialect === 'app-service-2017' }),
      })
      const identity = stack.emulator.state.managedIdentities[assigned === 'system' ? 0 : 1]!
      const arm = await startArm(t, stack)
      const env = azEnv(stack, dialect, await azConfigDir(t, stack, arm), join(stack.dir, 'emulator-ca.pem'))

      const login = await az(
        ['login', '--identity', ...(assigned === 'user' ? ['--username', identity.clientId] : [])],
        env,
      )
      assert.equal(login.status, 0, `${login.error ?? ''}\n${login.stderr.slice(-2000)}`)
      // az listed the subscriptions with the daemon's token for Resource Manager's audience.
      assert.ok(arm.tokens.length > 0, 'az called Resource Manager')
      const identityName = assigned === 'system' ? 'mi' : 'uami'
      await assertDaemonToken(
        stack,
        { status: 0, token: arm.tokens.at(-1)!, stderr: '' },
        { identity: identityName, resource: armAudience, appid: identity.clientId },
      )

      const token = await az(['account', 'get-access-token', '--resource', resource], env)
      await assertDaemonToken(
        stack,
        { ...token, ...(typeof token['accessToken'] === 'string' ? { token: token['accessToken'] } : {}) },
        { identity: identityName, resource, appid: identity.clientId },
      )
      assert.equal(token['subscription'], arm.subscriptionId)
      assertRoute(stack, dialect)
    })
  }
}
