import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { injectYaml } from '../../sidecar/src/cli/inject/inject.ts'
import { parseInjectCommandLine, type InjectOptions } from '../../sidecar/src/cli/inject/options.ts'
import { apiSchemaProblems } from './api-schema.ts'
import { flatten, injectArgs, podOf, readObjects } from './manifests.ts'
import { restrictedViolations } from './pod-security.ts'

const goldenDir = join(import.meta.dirname, 'golden')
const cases = (await readdir(goldenDir)).filter((name) => name.endsWith('.in.yaml')).sort()

function optionsFrom(source: string): { input: string; options: InjectOptions } {
  const commandLine = parseInjectCommandLine(injectArgs(source.split('\n')[0]!))
  if (commandLine === 'help') throw new Error('help')
  return commandLine
}

for (const name of cases) {
  const outName = name.replace('.in.yaml', '.out.yaml')

  test(`inject golden ${name}: output as recorded, idempotent, valid, restricted`, async () => {
    const source = await readFile(join(goldenDir, name), 'utf8')
    const { input, options } = optionsFrom(source)
    const output = injectYaml(source, options, input)
    if (process.env['UPDATE_GOLDEN']) await writeFile(join(goldenDir, outName), output)
    assert.equal(
      output,
      await readFile(join(goldenDir, outName), 'utf8'),
      `${outName}: UPDATE_GOLDEN=1 to rewrite`,
    )

    assert.equal(injectYaml(output, options, outName), output, 'injecting twice changes nothing')

    const before = readObjects(source)
    const after = readObjects(output)
    assert.equal(after.length, before.length, 'inject adds no documents')
    for (const [index, object] of after.entries())
      if (!podOf(object) && object['kind'] !== 'List')
        assert.deepEqual(object, before[index], 'passed through unchanged')
    // `List` is no API type (kubectl unwraps it): its items are validated one by one.
    for (const object of flatten(after)) {
      const problems = await apiSchemaProblems(object)
      if (String(object['apiVersion']).includes('.'))
        assert.deepEqual(
          problems,
          [`no schema for ${object['apiVersion']} ${object['kind']}`],
          'a custom resource',
        )
      else assert.deepEqual(problems, [], `${outName}: ${object['kind']} ${object['metadata']?.name}`)
    }
    for (const object of flatten(after)) {
      const pod = podOf(object)
      if (!pod) continue
      // The app containers are the user's; the sidecar must pass on its own.
      const sidecarViolations = restrictedViolations(pod.spec, pod.metadata).filter((v) =>
        v.startsWith('initContainers[credential-sidecar]'),
      )
      assert.deepEqual(sidecarViolations, [], `${object['metadata'].name}`)
      assert.equal(pod.spec['initContainers'][0].name, 'credential-sidecar', 'first among init containers')
      assert.equal(pod.spec['initContainers'][0].restartPolicy, 'Always', 'a native sidecar')
    }
  })
}

test('golden: every handled kind gets the sidecar; other kinds and custom resources do not', async () => {
  const objects = flatten(readObjects(await readFile(join(goldenDir, 'all-kinds.out.yaml'), 'utf8')))
  const injected = objects.filter((o) => podOf(o)?.spec['initContainers']?.[0]?.name === 'credential-sidecar')
  assert.deepEqual(
    injected.map((o) => o['kind']),
    ['Pod', 'Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob', 'Deployment'],
  )
  const volcano = objects.find((o) => o['metadata']?.name === 'volcano')!
  assert.equal(JSON.stringify(volcano).includes('credential-sidecar'), false)
})

test('golden: the YAML-1.1 hazards inject writes are quoted, and the output reads the same in YAML 1.1 and 1.2', async () => {
  const output = await readFile(join(goldenDir, 'yaml-hazards.out.yaml'), 'utf8')
  assert.match(output, /azure\.workload\.identity\/use: "true"/)
  assert.match(output, /azure\.workload\.identity\/skip-containers: "yes"/)
  assert.match(output, /skip-containers: debug;"?on"?/)
  assert.match(output, /defaultMode: 0555/, "the user's octal is left as written")
  const [pod] = readObjects(output)
  assert.equal(pod!['metadata']['labels']['azure.workload.identity/use'], 'true')
  assert.equal(
    pod!['spec']['volumes'][0].configMap.defaultMode,
    0o555,
    'YAML 1.1 reads 0555 as octal, as kubectl does',
  )
  // What inject wrote needs no YAML version to be read right: the sidecar's part is the same in both.
  const { parseAllDocuments } = await import('yaml')
  const sidecarIn = (version: '1.1' | '1.2') =>
    JSON.stringify((parseAllDocuments(output, { version })[0]!.toJS() as any).spec.initContainers[0])
  assert.equal(sidecarIn('1.2'), sidecarIn('1.1'))
})

test('golden: a secret is mounted 0440 (written in decimal) and readable through the fsGroup', async () => {
  const output = await readFile(join(goldenDir, 'secret-client-id.out.yaml'), 'utf8')
  assert.match(output, /defaultMode: 288\n/)
  const [pod] = readObjects(output)
  const spec = pod!['spec']
  assert.equal(spec.securityContext.fsGroup, 2000, 'an existing fsGroup is kept')
  const secretVolume = spec.volumes.find((v: any) => v.name === 'credential-sidecar-secret')
  assert.deepEqual(secretVolume.secret, {
    secretName: 'caller-secret',
    defaultMode: 0o440,
    items: [{ key: 'identity-header', path: 'identity-header' }],
  })
  const sidecar = spec.initContainers[0]
  assert.equal(sidecar.image, 'registry.example/credential-sidecar:9.9.9')
  const sidecarEnv = Object.fromEntries(sidecar.env.map((v: any) => [v.name, v.value]))
  assert.equal(
    sidecarEnv.CREDENTIAL_SIDECAR_SECRET_FILE,
    '/var/run/secrets/credential-sidecar/identity-header',
  )
  assert.equal(sidecarEnv.AZURE_CLIENT_ID, '33333333-3333-3333-3333-333333333333')
  assert.equal(spec.initContainers[1].name, 'migrate', 'later init containers stay after the sidecar')
  const appEnv = Object.fromEntries(spec.containers[0].env.map((v: any) => [v.name, v]))
  assert.equal(appEnv.IDENTITY_ENDPOINT.value, 'http://127.0.0.1:7780/msi/token')
  assert.equal(appEnv.LOG_LEVEL.value, 'debug')
  assert.equal(
    appEnv.AZURE_POD_IDENTITY_AUTHORITY_HOST,
    undefined,
    'the IMDS route demands the secret: not wired',
  )
})

test('golden: injecting again with other options refreshes the sidecar and takes back what no longer applies', async () => {
  const [pod] = readObjects(await readFile(join(goldenDir, 'reinject.out.yaml'), 'utf8'))
  const spec = pod!['spec']
  assert.deepEqual(
    spec.initContainers.map((c: any) => c.name),
    ['credential-sidecar', 'setup'],
  )
  assert.equal(spec.volumes, undefined, 'the old config volume is gone')
  assert.deepEqual(
    spec.containers[0].env.map((v: any) => `${v.name}=${v.value}`),
    ['CREDENTIAL_SIDECAR_ENDPOINT=http://127.0.0.1:7780', 'IDENTITY_ENDPOINT=http://example.internal/msi'],
  )

  const source = await readFile(join(goldenDir, 'all-kinds.in.yaml'), 'utf8')
  const { options } = optionsFrom(source)
  const pop: InjectOptions = { ...options, protocolScheme: 'MTLS_POP', secret: 'a' }
  const renamed: InjectOptions = { ...pop, secret: 'b' }
  assert.equal(
    injectYaml(injectYaml(source, pop), renamed),
    injectYaml(source, renamed),
    'the same as injecting the original with the new options',
  )
})

test('golden: --workload-identity labels the pod template (not the CronJob) and skips every other container', async () => {
  const [cronJob] = readObjects(await readFile(join(goldenDir, 'workload-identity-cronjob.out.yaml'), 'utf8'))
  assert.equal(cronJob!['metadata']['labels']['azure.workload.identity/use'], 'false')
  const { metadata } = podOf(cronJob!)!
  assert.equal(metadata['labels']['azure.workload.identity/use'], 'true')
  assert.equal(metadata['annotations']['azure.workload.identity/skip-containers'], 'fetch-inputs;report')
})
