import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { run } from '@bufbuild/cel'
import { parseWebhookCommandLine } from '../../sidecar/src/cli/webhook/command.ts'
import { review } from '../../sidecar/src/cli/webhook/review.ts'
import { sidecarVersion } from '../../sidecar/src/core/version.ts'
import { apiSchemaProblems } from './api-schema.ts'
import { readObjects, type KubeObject } from './manifests.ts'
import { restrictedViolations } from './pod-security.ts'
import { admissionReview } from './webhook-support.ts'

const dir = join(import.meta.dirname, '../../deploy/kubernetes/webhook')
const namespace = 'credential-sidecar-system'

/**
 * What `kubectl apply -k` builds from the kustomization: its resources, in order, with its
 * `images` applied to the containers. The kustomization uses nothing else (no generators, patches
 * or namespace transformer), which the first test checks, so this is the whole build.
 */
async function build(): Promise<{ kustomization: KubeObject; objects: KubeObject[] }> {
  const [kustomization] = readObjects(await readFile(join(dir, 'kustomization.yaml'), 'utf8'))
  const objects: KubeObject[] = []
  for (const file of kustomization!['resources'] as string[])
    objects.push(...readObjects(await readFile(join(dir, file), 'utf8')))
  for (const object of objects)
    for (const container of object['spec']?.template?.spec?.containers ?? []) {
      const [name, tag] = String(container.image).split(':')
      const image = (kustomization!['images'] ?? []).find((entry: KubeObject) => entry['name'] === name)
      if (image) container.image = `${image.newName ?? name}:${image.newTag ?? tag}`
    }
  return { kustomization: kustomization!, objects }
}

const find = (objects: KubeObject[], kind: string, name?: string) => {
  const found = objects.filter(
    (o) => o['kind'] === kind && (name === undefined || o['metadata']['name'] === name),
  )
  assert.equal(found.length, 1, `one ${kind} ${name ?? ''}`)
  return found[0]!
}

test('the kustomization lists every manifest of the folder once, and uses only what this test resolves', async () => {
  const { kustomization, objects } = await build()
  assert.equal(kustomization['apiVersion'], 'kustomize.config.k8s.io/v1beta1')
  assert.equal(kustomization['kind'], 'Kustomization')
  assert.deepEqual(
    Object.keys(kustomization).sort(),
    ['apiVersion', 'images', 'kind', 'resources'],
    'a new kustomize feature here needs this test to resolve it',
  )
  const files = (await readdir(dir)).filter((name) => name.endsWith('.yaml') && name !== 'kustomization.yaml')
  assert.deepEqual([...kustomization['resources']].sort(), files.sort())
  const ids = objects.map((o) => `${o['kind']}/${o['metadata']['namespace'] ?? ''}/${o['metadata']['name']}`)
  assert.equal(new Set(ids).size, ids.length, 'no object twice')
  // Everything namespaced is in the webhook's namespace (there is no namespace transformer).
  for (const object of objects)
    if (!['Namespace', 'MutatingWebhookConfiguration'].includes(object['kind']))
      assert.equal(
        object['metadata']['namespace'],
        namespace,
        `${object['kind']} ${object['metadata']['name']}`,
      )
  // No RBAC: the webhook needs no API permissions.
  assert.deepEqual(
    objects.filter((o) => String(o['apiVersion']).startsWith('rbac.')),
    [],
  )
})

test('every manifest validates against its schema (Kubernetes API, cert-manager CRDs), unknown fields included', async () => {
  const { objects } = await build()
  assert.ok(objects.length >= 10)
  for (const object of objects)
    assert.deepEqual(await apiSchemaProblems(object), [], `${object['kind']} ${object['metadata']['name']}`)
})

test('the Deployment: two replicas apart, restricted, probes on the HTTPS port, the TLS Secret mounted, no API token', async () => {
  const { objects } = await build()
  const deployment = find(objects, 'Deployment')
  const pod = deployment['spec']['template']
  assert.equal(deployment['spec']['replicas'], 2)
  assert.ok(pod['spec']['affinity']['podAntiAffinity'])
  assert.deepEqual(restrictedViolations(pod['spec'], pod['metadata']), [])
  assert.equal(pod['spec']['automountServiceAccountToken'], false)
  const account = find(objects, 'ServiceAccount', pod['spec']['serviceAccountName'])
  assert.equal(account['automountServiceAccountToken'], false)

  const [container] = pod['spec']['containers']
  assert.ok(container.resources.requests && container.resources.limits)
  assert.equal(container.securityContext.readOnlyRootFilesystem, true)
  for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
    assert.equal(container[probe].httpGet.scheme, 'HTTPS')
    assert.equal(container[probe].httpGet.port, container.ports[0].name)
  }
  assert.equal(container.readinessProbe.httpGet.path, '/readyz')
  assert.equal(container.livenessProbe.httpGet.path, '/healthz')

  // The command line is one the webhook accepts, reading the files where the Secret is mounted,
  // and injecting the very image the webhook runs as (one image for both), of this version.
  const commandLine = parseWebhookCommandLine(container.args.slice(1))
  assert.equal(container.args[0], 'webhook')
  assert.notEqual(commandLine, 'help')
  if (commandLine === 'help') return
  assert.deepEqual(commandLine.warnings, [])
  assert.equal(commandLine.port, container.ports[0].containerPort)
  assert.equal(commandLine.defaults.image, container.image)
  assert.ok(container.image.endsWith(`:${sidecarVersion()}`), 'the manifests name this version')
  const mount = container.volumeMounts[0]
  const volume = pod['spec']['volumes'].find((v: KubeObject) => v['name'] === mount.name)
  assert.equal(commandLine.tlsCert, `${mount.mountPath}/tls.crt`)
  assert.equal(commandLine.tlsKey, `${mount.mountPath}/tls.key`)
  const certificate = find(objects, 'Certificate', 'credential-sidecar-webhook')
  assert.equal(volume.secret.secretName, certificate['spec']['secretName'])

  const pdb = find(objects, 'PodDisruptionBudget')
  assert.deepEqual(pdb['spec']['selector']['matchLabels'], deployment['spec']['selector']['matchLabels'])
  assert.equal(pdb['spec']['minAvailable'], 1)
  const service = find(objects, 'Service')
  for (const [key, value] of Object.entries(service['spec']['selector']))
    assert.equal(pod['metadata']['labels'][key], value)
  assert.equal(service['spec']['ports'][0].targetPort, container.ports[0].name)
})

test('the MutatingWebhookConfiguration: the surface contract §5 asks for, pointing at the Service, CA from cert-manager', async () => {
  const { objects } = await build()
  const configuration = find(objects, 'MutatingWebhookConfiguration')
  const service = find(objects, 'Service')
  const [caNamespace, caName] =
    configuration['metadata']['annotations']['cert-manager.io/inject-ca-from'].split('/')
  const certificate = find(objects, 'Certificate', caName)
  assert.equal(certificate['metadata']['namespace'], caNamespace)
  const serviceDns = `${service['metadata']['name']}.${service['metadata']['namespace']}.svc`
  assert.ok(certificate['spec']['dnsNames'].includes(serviceDns), 'kube-apiserver dials the .svc name')
  // The serving certificate's issuer chain resolves inside the folder.
  const issuer = find(objects, 'Issuer', certificate['spec']['issuerRef']['name'])
  const ca = find(objects, 'Certificate', 'credential-sidecar-webhook-ca')
  assert.equal(issuer['spec']['ca']['secretName'], ca['spec']['secretName'])
  assert.equal(ca['spec']['isCA'], true)
  find(objects, 'Issuer', ca['spec']['issuerRef']['name'])

  assert.equal(configuration['webhooks'].length, 2)
  for (const webhook of configuration['webhooks']) {
    assert.equal(webhook.sideEffects, 'None')
    assert.deepEqual(webhook.admissionReviewVersions, ['v1'])
    assert.ok(webhook.timeoutSeconds <= 10)
    assert.equal(webhook.reinvocationPolicy, 'IfNeeded')
    assert.ok(['Fail', 'Ignore'].includes(webhook.failurePolicy))
    assert.deepEqual(webhook.rules, [
      {
        operations: ['CREATE'],
        apiGroups: [''],
        apiVersions: ['v1'],
        resources: ['pods'],
        scope: 'Namespaced',
      },
    ])
    assert.deepEqual(webhook.clientConfig.service, {
      name: service['metadata']['name'],
      namespace: service['metadata']['namespace'],
      path: '/mutate',
      port: service['spec']['ports'][0].port,
    })
  }
})

// kube-apiserver's side of the selection: the namespace selector, then the match conditions (CEL).
function matchesSelector(labels: Record<string, string>, selector: KubeObject = {}): boolean {
  for (const [key, value] of Object.entries(selector['matchLabels'] ?? {}))
    if (labels[key] !== value) return false
  return (selector['matchExpressions'] ?? []).every((e: KubeObject) => {
    const has = Object.hasOwn(labels, e['key'])
    switch (e['operator']) {
      case 'In':
        return has && e['values'].includes(labels[e['key']])
      case 'NotIn':
        return !has || !e['values'].includes(labels[e['key']])
      case 'Exists':
        return has
      case 'DoesNotExist':
        return !has
      default:
        throw new Error(`operator ${e['operator']}`)
    }
  })
}

const toCel = (value: unknown): unknown =>
  Array.isArray(value)
    ? value.map(toCel)
    : value && typeof value === 'object'
      ? new Map(Object.entries(value).map(([key, child]) => [key, toCel(child)]))
      : value

function webhooksCalled(
  configuration: KubeObject,
  namespaceName: string,
  namespaceLabels: Record<string, string>,
  pod: KubeObject,
): string[] {
  const labels = { 'kubernetes.io/metadata.name': namespaceName, ...namespaceLabels }
  return configuration['webhooks']
    .filter(
      (webhook: KubeObject) =>
        matchesSelector(labels, webhook['namespaceSelector']) &&
        matchesSelector(pod['metadata']['labels'] ?? {}, webhook['objectSelector']) &&
        (webhook['matchConditions'] ?? []).every((condition: KubeObject) => {
          const result = run(condition['expression'], { object: toCel(pod) as never })
          assert.equal(typeof result, 'boolean', condition['name'])
          return result
        }),
    )
    .map((webhook: KubeObject) => webhook['name'])
}

test('selection as kube-apiserver does it, then the webhook: labelled namespaces and annotated pods get the sidecar, nothing else', async () => {
  const { objects } = await build()
  const configuration = find(objects, 'MutatingWebhookConfiguration')
  const defaults = {
    image: 'r.example/credential-sidecar:1',
    protocolScheme: 'Bearer' as const,
    workloadIdentity: false,
  }
  const enabled = { 'credential-sidecar.io/inject': 'enabled' }
  const annotated = (value?: string) =>
    admissionReview((r) => {
      r['request']['object']['metadata']['annotations'] = value
        ? { 'credential-sidecar.io/inject': value }
        : {}
    })['request']['object']

  const cases: [string, Record<string, string>, string | undefined, 'injected' | 'not sent' | 'skipped'][] = [
    ['team-a', enabled, undefined, 'injected'],
    ['team-a', enabled, 'enabled', 'injected'],
    ['team-a', enabled, 'disabled', 'not sent'],
    ['team-b', {}, 'enabled', 'injected'],
    ['team-b', {}, undefined, 'not sent'],
    ['team-b', { 'credential-sidecar.io/inject': 'disabled' }, undefined, 'not sent'],
    ['team-b', {}, 'disabled', 'not sent'],
    ['kube-system', enabled, 'enabled', 'not sent'],
    [namespace, enabled, 'enabled', 'not sent'],
  ]
  for (const [name, labels, annotation, expected] of cases) {
    const pod = annotated(annotation)
    const called = webhooksCalled(configuration, name, labels, pod)
    const what = `namespace ${name} ${JSON.stringify(labels)}, pod annotation ${annotation}`
    assert.ok(called.length <= 1, `${what}: at most one webhook, got ${called}`)
    if (expected === 'not sent') {
      assert.deepEqual(called, [], what)
      continue
    }
    const outcome = review(
      admissionReview((r) => (r['request']['object'] = pod)),
      defaults,
    )
    assert.equal(outcome.decision, expected, what)
  }
  // Defence in depth: a pod saying disabled is skipped even if a configuration did send it.
  assert.equal(
    review(
      admissionReview((r) => (r['request']['object'] = annotated('disabled'))),
      defaults,
    ).decision,
    'skipped',
  )
})
