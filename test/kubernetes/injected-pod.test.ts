import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startEmulator } from '../support/emulator.ts'
import { registerApp, registerWorkloadIssuer } from '../../sidecar/src/emulator/entra.ts'
import { injectYaml } from '../../sidecar/src/cli/inject/inject.ts'
import type { InjectOptions } from '../../sidecar/src/cli/inject/options.ts'
import { startProcess } from '../process/process.ts'
import { waitUntil } from '../support/wait-until.ts'
import { readObjects, type KubeObject } from './manifests.ts'

/**
 * What inject writes, run as the kubelet would run it: the sidecar is the real bin with exactly the
 * container's environment (listeners moved to free ports, the secret file to a temporary one, IMDS
 * to the emulator), the probes' paths are asked on the ops listener, and an unmodified Azure SDK
 * gets a token with exactly the app container's environment.
 */
const sdkClient = join(import.meta.dirname, '../compat/sdk-client.ts')
const resource = 'https://management.azure.com'
const podYaml =
  'apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: app\n      image: app:1\n'

function runSdk(
  env: Record<string, string>,
  sdk: 'identity' | 'default' = 'identity',
): Promise<{ token?: string; error?: string }> {
  const childEnv = { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? tmpdir(), ...env }
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [sdkClient, sdk, resource],
      { env: childEnv, timeout: 60_000 },
      (_, stdout) => {
        try {
          resolve(JSON.parse(stdout))
        } catch {
          resolve({ error: `unparseable output: ${stdout.slice(0, 200)}` })
        }
      },
    )
  })
}

for (const secret of [undefined, 'caller']) {
  test(`an injected pod (Bearer, ${secret ? 'caller secret' : 'no secret'}) runs: probes answer on the ops port, the app's SDK gets a token`, async (t) => {
    const options: InjectOptions = {
      image: 'credential-sidecar:test',
      protocolScheme: 'Bearer',
      workloadIdentity: false,
    }
    if (secret) options.secret = secret
    const [pod] = readObjects(injectYaml(podYaml, options))
    const sidecar = pod!['spec']['initContainers'][0] as KubeObject
    const app = pod!['spec']['containers'][0] as KubeObject

    const emulator = await startEmulator()
    t.after(() => emulator.close())
    const secretValue = 'pod-caller-secret-value'
    const secretFile = join(mkdtempSync(join(tmpdir(), 'injected-pod-')), 'identity-header')
    writeFileSync(secretFile, secretValue, { mode: 0o600 })

    const sidecarEnv: Record<string, string> = { AZURE_POD_IDENTITY_AUTHORITY_HOST: emulator.imdsUrl }
    for (const { name, value } of sidecar['env'] as { name: string; value: string }[])
      sidecarEnv[name] =
        name === 'CREDENTIAL_SIDECAR_LISTEN' || name === 'CREDENTIAL_SIDECAR_OPS_LISTEN'
          ? '127.0.0.1:0'
          : name === 'CREDENTIAL_SIDECAR_SECRET_FILE'
            ? secretFile
            : value
    const daemon = startProcess(t, [], sidecarEnv)
    const listening = await daemon.waitFor('listening')
    const url = listening['url'] as string
    const ops = listening['ops'] as string | undefined
    assert.ok(ops, 'the daemon opened the ops listener')

    for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
      const path = sidecar[probe].httpGet.path as string
      // Asked until it holds, as the kubelet would; the daemon may still be warming under load.
      await waitUntil(async () => (await fetch(`${ops}${path}`)).status === 200, `${probe} ${path} is 200`, {
        intervalMs: 200,
      })
    }
    assert.equal(
      (await fetch(`${ops}/token?resource=${resource}`, { headers: { Metadata: 'true' } })).status,
      404,
    )

    const appEnv: Record<string, string> = {}
    for (const variable of app['env'] as KubeObject[])
      appEnv[variable['name']] = variable['valueFrom']
        ? secretValue
        : String(variable['value']).replace('http://127.0.0.1:7780', url)
    const result = await runSdk(appEnv)
    assert.equal(result.error, undefined)
    assert.ok(result.token && result.token.length > 100)
  })
}

// The daemon's part: client_id on the compat routes selects a confidential client by its clientId;
// without it this fails with 400 "Identity not found", the case.
test('an injected workload-identity pod whose app container sets its own AZURE_CLIENT_ID: the app’s SDK gets a token', async (t) => {
  const emulator = await startEmulator()
  t.after(() => emulator.close())
  const dir = mkdtempSync(join(tmpdir(), 'injected-wi-'))
  // What AKS gives the pod: an OIDC issuer Entra trusts for the ServiceAccount's subject, the
  // projected token file, and (from the azure-workload-identity webhook) the AZURE_* variables.
  const subject = 'system:serviceaccount:team-a:app'
  const issuer = await registerWorkloadIssuer(emulator.state, 'https://oidc.aks.example/cluster-1/')
  const app = registerApp(emulator.state, { federatedIssuers: [{ issuer: issuer.issuer, subject }] })
  const tokenFile = join(dir, 'azure-identity-token')
  writeFileSync(tokenFile, await issuer.sign({ subject }))
  const caFile = join(dir, 'ca.pem')
  writeFileSync(caFile, emulator.caPem)

  const appYaml = `${podYaml}      env:\n        - name: AZURE_CLIENT_ID\n          value: ${app.clientId}\n`
  const options: InjectOptions = {
    image: 'credential-sidecar:test',
    protocolScheme: 'Bearer',
    workloadIdentity: true,
  }
  const [pod] = readObjects(injectYaml(appYaml, options))
  assert.equal(pod!['metadata']['annotations']['azure.workload.identity/skip-containers'], 'app')
  const sidecar = pod!['spec']['initContainers'][0] as KubeObject
  const appContainer = pod!['spec']['containers'][0] as KubeObject

  const sidecarEnv: Record<string, string> = {
    AZURE_CLIENT_ID: app.clientId,
    AZURE_TENANT_ID: emulator.state.tenantId,
    AZURE_FEDERATED_TOKEN_FILE: tokenFile,
    AZURE_AUTHORITY_HOST: emulator.entraUrl,
    NODE_EXTRA_CA_CERTS: caFile,
  }
  for (const { name, value } of sidecar['env'] as { name: string; value: string }[])
    sidecarEnv[name] = name.endsWith('_LISTEN') ? '127.0.0.1:0' : value
  const daemon = startProcess(t, [], sidecarEnv)
  const url = (await daemon.waitFor('listening'))['url'] as string

  // The app container keeps its own AZURE_CLIENT_ID (skipped by the workload identity webhook):
  // its SDK sends it as client_id, and the sidecar serves the workload identity app by that id.
  const appEnv: Record<string, string> = {}
  for (const variable of appContainer['env'] as KubeObject[])
    appEnv[variable['name']] = String(variable['value']).replace('http://127.0.0.1:7780', url)
  assert.equal(appEnv['AZURE_CLIENT_ID'], app.clientId)
  assert.equal(appEnv['AZURE_FEDERATED_TOKEN_FILE'], undefined)
  // DefaultAzureCredential, as apps use it: its managed identity leg takes AZURE_CLIENT_ID.
  const result = await runSdk(appEnv, 'default')
  assert.equal(result.error, undefined)
  assert.ok(result.token && result.token.length > 100)
})
