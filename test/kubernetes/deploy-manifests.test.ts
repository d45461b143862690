import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile, readdir, writeFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { injectYaml } from '../../sidecar/src/cli/inject/inject.ts'
import { parseInjectCommandLine } from '../../sidecar/src/cli/inject/options.ts'
import { parseConfig } from '../../sidecar/src/config/load.ts'
import { apiSchemaProblems } from './api-schema.ts'
import { flatten, injectArgs, podOf, readObjects, type KubeObject } from './manifests.ts'
import { restrictedViolations } from './pod-security.ts'

const root = join(import.meta.dirname, '../..')
const deployDir = join(root, 'deploy/kubernetes')
const inputDir = join(deployDir, 'input')

async function yamlFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.endsWith('.yaml')).sort()
}

async function allDeployObjects(): Promise<{ file: string; object: KubeObject }[]> {
  const result: { file: string; object: KubeObject }[] = []
  for (const dir of [deployDir, inputDir])
    for (const name of await yamlFiles(dir))
      for (const object of flatten(readObjects(await readFile(join(dir, name), 'utf8'))))
        result.push({ file: relative(root, join(dir, name)), object })
  return result
}

test('deploy/kubernetes/*.yaml are what inject writes from input/*.yaml with the command in their first line', async () => {
  const inputs = await yamlFiles(inputDir)
  assert.deepEqual(await yamlFiles(deployDir), inputs, 'one output per input, nothing else')
  for (const name of inputs) {
    const source = await readFile(join(inputDir, name), 'utf8')
    const args = injectArgs(source.split('\n')[0]!)
    assert.equal(args[0], `deploy/kubernetes/input/${name}`)
    const commandLine = parseInjectCommandLine(args)
    assert.notEqual(commandLine, 'help')
    if (commandLine === 'help') return
    const expected = injectYaml(source, commandLine.options, commandLine.input)
    if (process.env['UPDATE_GOLDEN']) await writeFile(join(deployDir, name), expected)
    assert.equal(
      await readFile(join(deployDir, name), 'utf8'),
      expected,
      `${name} is stale: UPDATE_GOLDEN=1 npm test`,
    )
  }
})

test('every document in deploy/kubernetes/ validates against the Kubernetes API schema (strict fields)', async () => {
  const objects = await allDeployObjects()
  assert.ok(objects.length >= 8)
  for (const { file, object } of objects)
    assert.deepEqual(
      await apiSchemaProblems(object),
      [],
      `${file}: ${object['kind']} ${object['metadata']?.name}`,
    )
})

test('every pod in deploy/kubernetes/ passes the Pod Security "restricted" profile', async () => {
  let pods = 0
  for (const { file, object } of await allDeployObjects()) {
    const pod = podOf(object)
    if (!pod) continue
    pods++
    assert.deepEqual(restrictedViolations(pod.spec, pod.metadata), [], `${file}: ${object['metadata']?.name}`)
  }
  assert.equal(pods, 4, 'two apps, before and after inject')
})

test('every ConfigMap and Secret the examples reference is defined there or created by a command in docs/kubernetes.md', async () => {
  const objects = (await allDeployObjects()).filter(({ file }) => !file.includes('/input/'))
  const defined = new Set(objects.map(({ object }) => `${object['kind']}/${object['metadata']?.name}`))
  const readme = await readFile(join(root, 'docs/kubernetes.md'), 'utf8')
  const referenced = new Set<string>()
  for (const { object } of objects) {
    const pod = podOf(object)
    if (!pod) continue
    for (const volume of pod.spec['volumes'] ?? []) {
      if (volume.configMap) referenced.add(`ConfigMap/${volume.configMap.name}`)
      if (volume.secret) referenced.add(`Secret/${volume.secret.secretName}`)
    }
    for (const container of [...(pod.spec['initContainers'] ?? []), ...pod.spec['containers']])
      for (const variable of container.env ?? []) {
        const ref = variable.valueFrom?.secretKeyRef ?? variable.valueFrom?.configMapKeyRef
        if (ref) referenced.add(`${variable.valueFrom.secretKeyRef ? 'Secret' : 'ConfigMap'}/${ref.name}`)
      }
  }
  assert.ok(referenced.size >= 2)
  for (const reference of referenced) {
    const [kind, name] = reference.split('/')
    const created =
      kind === 'Secret' &&
      new RegExp(`kubectl create secret generic ${name} \\\\\\n\\s+--from-literal=identity-header=`).test(
        readme,
      )
    assert.ok(
      defined.has(reference) || created,
      `${reference} is neither defined nor created by docs/kubernetes.md`,
    )
  }
})

test('example (a) wires an unmodified Azure SDK to a Bearer identity; (b) the client SDK to an MTLS_POP identity', async () => {
  const deployment = async (file: string) => {
    const objects = readObjects(await readFile(join(deployDir, file), 'utf8'))
    return podOf(objects.find((object) => object['kind'] === 'Deployment')!)!
  }
  const env = (container: KubeObject) =>
    Object.fromEntries((container['env'] ?? []).map((v: KubeObject) => [v['name'], v]))

  const a = await deployment('azure-sdk-app.yaml')
  assert.equal(a.spec['initContainers'][0].name, 'credential-sidecar')
  assert.equal(a.spec['initContainers'][0].restartPolicy, 'Always')
  assert.equal(env(a.spec['initContainers'][0])['CREDENTIAL_SIDECAR_PROTOCOL_SCHEME'].value, 'Bearer')
  assert.equal(
    env(a.spec['containers'][0])['AZURE_POD_IDENTITY_AUTHORITY_HOST'].value,
    'http://127.0.0.1:7780',
  )
  assert.equal(a.metadata['labels']['azure.workload.identity/use'], 'true')
  assert.equal(a.metadata['annotations']['azure.workload.identity/skip-containers'], 'app')

  const b = await deployment('client-sdk-app.yaml')
  const sidecar = b.spec['initContainers'][0]
  assert.equal(env(sidecar)['CREDENTIAL_SIDECAR_CONFIG'].value, '/etc/credential-sidecar/config.yaml')
  const appEnv = env(b.spec['containers'][0])
  assert.equal(appEnv['CREDENTIAL_SIDECAR_ENDPOINT'].value, 'http://127.0.0.1:7780')
  assert.deepEqual(appEnv['IDENTITY_HEADER'].valueFrom, {
    secretKeyRef: { name: 'credential-sidecar-caller', key: 'identity-header' },
  })
  // Unmodified SDKs would ask a PoP identity for Bearer tokens and fail: they are not wired.
  assert.equal(appEnv['AZURE_POD_IDENTITY_AUTHORITY_HOST'], undefined)
  assert.equal(appEnv['IDENTITY_ENDPOINT'], undefined)
  assert.equal(b.spec['securityContext'].fsGroup, 65532, 'the Secret (0440) is readable through the fsGroup')
})

test("example (b)'s ConfigMap holds a config the daemon accepts", async () => {
  const objects = readObjects(await readFile(join(deployDir, 'client-sdk-app.yaml'), 'utf8'))
  const configMap = objects.find((object) => object['kind'] === 'ConfigMap')!
  const config = parseConfig(configMap['data']['config.yaml'], { source: 'config.yaml', env: {} })
  assert.equal(config.identities.get('mi')?.protocolScheme, 'MTLS_POP')
  // The probes in the manifest ask the ops listener the config opens.
  assert.ok(config.listen.ops)
})
