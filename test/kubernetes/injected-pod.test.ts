import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startEmulator } from '../../sidecar/src/emulator/emulator.ts'
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

function runSdk(env: Record<string, string>): Promise<{ token?: string; error?: string }> {
  const childEnv = { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? tmpdir(), ...env }
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [sdkClient, 'identity', resource],
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
