import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { PassThrough } from 'node:stream'
import { text } from 'node:stream/consumers'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runInject } from '../../sidecar/src/cli/inject/command.ts'
import { injectYaml } from '../../sidecar/src/cli/inject/inject.ts'
import type { InjectOptions } from '../../sidecar/src/cli/inject/options.ts'
import { InjectRefusal } from '../../sidecar/src/cli/inject/refusal.ts'
import { readObjects } from './manifests.ts'

const options: InjectOptions = {
  image: 'credential-sidecar:test',
  protocolScheme: 'Bearer',
  workloadIdentity: false,
}
const pod = (spec: string) => `apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n${spec}`
const app = '  containers:\n    - name: app\n      image: app:1\n'

function refused(text: string, message: RegExp) {
  assert.throws(
    () => injectYaml(text, options, 'in.yaml'),
    (error: unknown) => {
      assert.ok(error instanceof InjectRefusal)
      assert.match(error.message, message)
      return true
    },
  )
}

test('inject refuses hostNetwork pods, also when YAML 1.1 spells true as yes', () => {
  refused(
    pod(`  hostNetwork: true\n${app}`),
    /in\.yaml: document 1 \(Pod p\): hostNetwork pods share the node's loopback/,
  )
  refused(pod(`  hostNetwork: yes\n${app}`), /hostNetwork/)
  assert.ok(injectYaml(pod(`  hostNetwork: false\n${app}`), options).includes('credential-sidecar'))
})

test('inject refuses a pod that already runs a container named credential-sidecar among its app containers', () => {
  refused(
    pod(
      '  containers:\n    - name: app\n      image: app:1\n    - name: credential-sidecar\n      image: x\n',
    ),
    /spec\.containers already has a container named "credential-sidecar".*remove it/,
  )
})

test("inject refuses a container on the sidecar's ports", () => {
  for (const port of [7780, 7781])
    refused(
      pod(
        `  containers:\n    - name: web\n      image: app:1\n      ports:\n        - containerPort: ${port}\n`,
      ),
      new RegExp(`container "web" uses port ${port}`),
    )
})

test('inject refuses malformed YAML with file:line:col, and workloads with no pod to inject into', () => {
  refused('apiVersion: v1\nkind: Pod\nmetadata: {name: p\nspec: {}\n', /^in\.yaml:\d+:\d+: not valid YAML/)
  refused('a: [1, 2\n', /^in\.yaml:\d+:\d+: not valid YAML/)
  refused(
    'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  replicas: 1\n',
    /Deployment d\): no pod spec \(a mapping\) at spec\.template\.spec/,
  )
  refused(pod('  containers: []\n'), /spec\.containers is missing or empty/)
  refused(pod('  containers:\n    - just-a-string\n'), /spec\.containers\[0\] is not a container/)
  refused(pod(`  initContainers: {}\n${app}`), /initContainers is not a list/)
  refused(pod(`  os:\n    name: windows\n${app}`), /a Windows pod/)
  refused(
    `base: &base\n  name: app\n  image: app:1\n---\n${pod('  containers:\n    - &c {name: app, image: app:1}\n    - *c\n')}`,
    /spec\.containers\[1\] is a YAML alias/,
  )
})

test('a refusal in any document refuses the whole stream: nothing is half-injected', () => {
  const good = pod(app)
  refused(`${good}---\n${pod(`  hostNetwork: true\n${app}`)}`, /document 2 \(Pod p\)/)
})

test('documents that are not workloads, empty documents and an empty stream pass through', () => {
  assert.equal(injectYaml('', options), '')
  const text = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: "on"\n'
  assert.equal(injectYaml(text, options), text)
  assert.equal(readObjects(injectYaml(`${text}---\n---\n${pod(app)}`, options)).length, 2)
})

/** The command in process, on in-memory streams (starting the bin costs seconds on a busy machine). */
async function runInProcess(args: string[], stdin = '') {
  const io = { stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough() }
  io.stdin.end(stdin)
  const code = await runInject(args, io)
  io.stdout.end()
  io.stderr.end()
  return { code, stdout: await text(io.stdout), stderr: await text(io.stderr) }
}

// The real entry point: exit codes, standard input, nothing on stdout when refused.
const bin = join(import.meta.dirname, '../../sidecar/bin/credential-sidecar.js')

function runBin(
  args: string[],
  stdin = '',
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, 'inject', ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => (stdout += chunk))
    child.stderr.on('data', (chunk) => (stderr += chunk))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(stdin)
  })
}

test('the command: 0 and the injected YAML from stdin or a file; 1 and nothing on stdout when refused', async () => {
  const fromStdin = await runBin(['-', '--image', 'credential-sidecar:test'], pod(app))
  assert.equal(fromStdin.code, 0, fromStdin.stderr)
  assert.equal(fromStdin.stdout, injectYaml(pod(app), options))

  const dir = mkdtempSync(join(tmpdir(), 'inject-'))
  const file = join(dir, 'app.yaml')
  writeFileSync(file, pod(app))
  const fromFile = await runInProcess([file, '--image', 'credential-sidecar:test'])
  assert.equal(fromFile.stdout, fromStdin.stdout)

  const refusedRun = await runBin(['-'], pod(`  hostNetwork: true\n${app}`))
  assert.equal(refusedRun.code, 1)
  assert.equal(refusedRun.stdout, '')
  assert.match(refusedRun.stderr, /^credential-sidecar inject: <stdin>: document 1 \(Pod p\): hostNetwork/)

  const missing = await runInProcess([join(dir, 'nope.yaml')])
  assert.equal(missing.code, 1)
  assert.match(missing.stderr, /cannot read .*nope\.yaml/)
})

test('the command: usage errors exit 2 with a hint; --help exits 0', async () => {
  for (const [args, message] of [
    [[], /exactly one input/],
    [['-', '--bogus'], /Unknown option '--bogus'/],
    [['-', '--protocol-scheme', 'pop'], /must be Bearer or MTLS_POP/],
    [['-', '--client-id', 'not-a-guid'], /is not a GUID/],
    [['-', '--secret', 'Bad_Name'], /not a Kubernetes object name/],
    [
      ['-', '--config-map', 'c', '--client-id', '33333333-3333-3333-3333-333333333333'],
      /with --config-map the file decides/,
    ],
    [['-', '--workload-identity', '--protocol-scheme', 'MTLS_POP'], /cannot bind a certificate/],
  ] as const) {
    const result = await runInProcess([...args], pod(app))
    assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`)
    assert.match(result.stderr, message)
    assert.match(result.stderr, /Usage: credential-sidecar inject/)
    assert.equal(result.stdout, '')
  }
  const help = await runInProcess(['--help'])
  assert.equal(help.code, 0)
  assert.match(help.stdout, /--config-map NAME/)
})

test("a user's empty volumes list stays; the one inject emptied when the secret went away does not", () => {
  const withEmpty = pod(`  volumes: []\n${app}`)
  const once = injectYaml(withEmpty, options)
  assert.match(once, /\n {2}volumes: \[\]\n/)
  assert.equal(injectYaml(once, options), once)

  const withFsGroup = pod(`  securityContext:\n    fsGroup: 1\n${app}`)
  assert.equal(
    injectYaml(injectYaml(withFsGroup, { ...options, secret: 's' }), options),
    injectYaml(withFsGroup, options),
  )
})

test('inject refuses a pod already labelled for Azure workload identity without --workload-identity', async () => {
  const labelled = (value: string) =>
    `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n    metadata:\n      labels:\n        azure.workload.identity/use: ${value}\n    spec:\n${app.replace(/^/gm, '    ').trimEnd()}\n`
  for (const value of ['"true"', 'true'])
    refused(
      labelled(value),
      /Deployment d\): the pod is labelled azure\.workload\.identity\/use: "true", so its app containers would get the federated token.*run inject with --workload-identity.*or remove the label/,
    )
  refused(
    pod(app).replace('  name: p\n', '  name: p\n  labels:\n    azure.workload.identity/use: "true"\n'),
    /Pod p\): the pod is labelled/,
  )
  // With the option the label is what inject writes anyway; "false" opts out of the webhook.
  const injected = readObjects(injectYaml(labelled('"true"'), { ...options, workloadIdentity: true }))[0]!
  assert.equal(
    injected['spec']['template']['metadata']['annotations']['azure.workload.identity/skip-containers'],
    'app',
  )
  assert.ok(injectYaml(labelled('"false"'), options).includes('credential-sidecar'))

  const result = await runInProcess(['-', '--image', 'r.example/credential-sidecar:1'], labelled('"true"'))
  assert.equal(result.code, 1)
  assert.equal(result.stdout, '')
  assert.equal(result.stderr.trim().split('\n').length, 1, 'one line')
})

const configMap = (name: string, config: string) =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n  config.yaml: |\n${config.replace(/^/gm, '    ')}\n---\n`
const goodConfig =
  'listen:\n  ops:\n    host: 0.0.0.0\n    port: 7781\ncallers:\n  secretFile: /var/run/secrets/credential-sidecar/identity-header\nidentities:\n  mi:\n    managedIdentity: {}\n'

test('inject refuses a --config-map in the input whose config.yaml lacks what the probes and the apps rely on', () => {
  const withSecret = { ...options, configMap: 'sc', secret: 'caller' }
  const inject = (config: string, opts: InjectOptions = withSecret) =>
    injectYaml(configMap('sc', config) + pod(app), opts, 'in.yaml')
  assert.ok(inject(goodConfig).includes('credential-sidecar-config'))

  const refusedWith = (config: string, message: RegExp, opts: InjectOptions = withSecret) =>
    assert.throws(
      () => inject(config, opts),
      (error: unknown) => error instanceof InjectRefusal && message.test(error.message),
    )
  const noOps = goodConfig.replace(/ {2}ops:\n.*\n.*\n/, '  port: 7780\n')
  refusedWith(
    noOps,
    /^in\.yaml: document 1 \(ConfigMap sc\): config\.yaml does not open the ops listener the injected probes ask .*add listen\.ops: \{host: 0\.0\.0\.0, port: 7781\}/,
  )
  refusedWith(goodConfig.replace('host: 0.0.0.0', 'host: 127.0.0.1'), /does not open the ops listener/)
  refusedWith(goodConfig.replace('port: 7781', 'port: 9000'), /does not open the ops listener/)
  refusedWith(
    goodConfig.replace('listen:\n', 'listen:\n  port: 8080\n'),
    /moves the token listener off 127\.0\.0\.1:7780/,
  )
  refusedWith(
    goodConfig.replace(/callers:\n.*\n/, ''),
    /does not read the caller secret --secret caller mounts .*set callers\.secretFile: \/var\/run\/secrets\/credential-sidecar\/identity-header/,
  )
  refusedWith(
    goodConfig,
    /sets callers\.secretFile, so the sidecar refuses every request without the secret.*--secret NAME/,
    { ...options, configMap: 'sc' },
  )
  refusedWith('a: [1\n', /config\.yaml is not valid YAML/)
  assert.throws(
    () => injectYaml(`apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sc\n---\n${pod(app)}`, withSecret),
    /has no data\.config\.yaml/,
  )
  // ${VAR} is resolved in the cluster, not here; another ConfigMap, or one not in the input, is not checked.
  inject(goodConfig.replace('port: 7781', 'port: ${OPS_PORT}'))
  assert.ok(
    injectYaml(configMap('other', 'listen: {}') + pod(app), withSecret).includes('credential-sidecar'),
  )
  assert.ok(injectYaml(pod(app), withSecret).includes('credential-sidecar-config'))
})

test('inject refuses an app container whose AZURE_CLIENT_ID names an identity the sidecar will not serve', () => {
  const withClientId = (value: string) =>
    pod(`${app}      env:\n        - name: AZURE_CLIENT_ID\n          value: "${value}"\n`)
  const id = '33333333-3333-3333-3333-333333333333'
  refused(
    withClientId(id),
    new RegExp(
      `container "app" sets AZURE_CLIENT_ID=${id}, .*the system-assigned managed identity \\(no --client-id\\) and would answer 400 "Identity not found"; run inject with --client-id ${id}`,
    ),
  )
  assert.throws(
    () => injectYaml(withClientId(id), { ...options, clientId: '44444444-4444-4444-4444-444444444444' }),
    /the managed identity with client id 44444444-4444-4444-4444-444444444444 \(--client-id\)/,
  )
  assert.throws(
    () =>
      injectYaml(withClientId(id), {
        ...options,
        workloadIdentity: true,
        clientId: '44444444-4444-4444-4444-444444444444',
      }),
    /Identity not found/,
  )
  // Served: the same id (GUIDs compare case-insensitively), or an id the ServiceAccount decides.
  injectYaml(withClientId(id.toUpperCase().replace(/3/g, '3')), { ...options, clientId: id })
  injectYaml(withClientId(id), { ...options, workloadIdentity: true })
  injectYaml(withClientId(id), { ...options, configMap: 'c' })
  // With AZURE_TENANT_ID the container configures an app credential of its own, not the sidecar's.
  injectYaml(withClientId(id).concat('        - name: AZURE_TENANT_ID\n          value: t\n'), options)
})

test('without --image, inject warns on stderr that the default image names no registry, and still writes', async () => {
  const plain = await runInProcess(['-'], pod(app))
  assert.equal(plain.code, 0)
  assert.match(plain.stdout, /image: credential-sidecar:\d+\.\d+\.\d+/)
  assert.match(
    plain.stderr,
    /^credential-sidecar inject: warning: the sidecar image credential-sidecar:\S+ names no registry, so the kubelet would pull docker\.io\/library\/credential-sidecar:\S+, .*pass --image REGISTRY\/credential-sidecar:\S+\n$/,
  )
  const given = await runInProcess(['-', '--image', 'credential-sidecar:local'], pod(app))
  assert.equal(given.code, 0)
  assert.equal(given.stderr, '', 'an image the user chose is the user’s call')
})
