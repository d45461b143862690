import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { apiSchemaProblems } from './api-schema.ts'
import { podOf, readObjects, type KubeObject } from './manifests.ts'
import { restrictedViolations } from './pod-security.ts'

// The schema and Pod Security checks prove something only if they fail what they should.

const restrictedContainer = {
  name: 'app',
  image: 'app:1',
  securityContext: {
    runAsNonRoot: true,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  },
}
const pod = (spec: KubeObject): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'p' },
  spec: { containers: [restrictedContainer], ...spec },
})

test('the restricted profile check admits a restricted pod and names each violation', () => {
  assert.deepEqual(restrictedViolations(pod({})['spec']), [])
  const withContainer = (securityContext: KubeObject, extra: KubeObject = {}) =>
    restrictedViolations(
      pod({
        initContainers: [
          {
            ...restrictedContainer,
            name: 'init',
            ...extra,
            securityContext: { ...restrictedContainer.securityContext, ...securityContext },
          },
        ],
      })['spec'],
    )
  assert.deepEqual(withContainer({ privileged: true }), ['initContainers[init]: privileged'])
  assert.deepEqual(withContainer({ allowPrivilegeEscalation: true }), [
    'initContainers[init]: allowPrivilegeEscalation is not false',
  ])
  assert.deepEqual(withContainer({ runAsNonRoot: undefined }), [
    'initContainers[init]: runAsNonRoot is not true (container or pod)',
  ])
  assert.deepEqual(withContainer({ runAsUser: 0 }), ['initContainers[init]: runAsUser is 0'])
  assert.deepEqual(
    withContainer({ capabilities: { drop: ['ALL'], add: ['NET_BIND_SERVICE', 'NET_ADMIN'] } }),
    ['initContainers[init]: adds capability NET_ADMIN'],
  )
  assert.deepEqual(withContainer({ capabilities: { drop: ['NET_RAW'] } }), [
    'initContainers[init]: capabilities.drop does not include ALL',
  ])
  assert.deepEqual(withContainer({ seccompProfile: { type: 'Unconfined' } }), [
    'initContainers[init]: seccompProfile is not RuntimeDefault or Localhost (container or pod)',
  ])
  assert.deepEqual(withContainer({ procMount: 'Unmasked' }), ['initContainers[init]: procMount Unmasked'])
  assert.deepEqual(withContainer({}, { ports: [{ containerPort: 80, hostPort: 80 }] }), [
    'initContainers[init]: hostPort 80',
  ])
  assert.deepEqual(restrictedViolations(pod({ hostNetwork: true, hostPID: true })['spec']), [
    'hostNetwork is true',
    'hostPID is true',
  ])
  assert.deepEqual(restrictedViolations(pod({ volumes: [{ name: 'h', hostPath: { path: '/' } }] })['spec']), [
    'volume h has type hostPath',
  ])
  assert.deepEqual(
    restrictedViolations(
      pod({ securityContext: { sysctls: [{ name: 'kernel.msgmax', value: '1' }] } })['spec'],
    ),
    ['unsafe sysctl kernel.msgmax'],
  )
})

test('the manifest shipped before inject fails the restricted profile', async () => {
  const objects = readObjects(
    await readFile(join(import.meta.dirname, 'fixtures/broken-sidecar.yaml'), 'utf8'),
  )
  const { spec, metadata } = podOf(objects.find((object) => object['kind'] === 'Pod')!)!
  const violations = restrictedViolations(spec, metadata)
  assert.ok(violations.includes('containers[credential-sidecar]: capabilities.drop does not include ALL'))
  assert.ok(
    violations.includes(
      'containers[credential-sidecar]: seccompProfile is not RuntimeDefault or Localhost (container or pod)',
    ),
  )
})

test('the API schema check refuses unknown fields, wrong types and missing required fields', async () => {
  assert.deepEqual(await apiSchemaProblems(pod({})), [])
  assert.deepEqual(
    await apiSchemaProblems(pod({ initContainers: [{ name: 's', image: 'x', restartPolicyy: 'Always' }] })),
    ['/spec/initContainers/0/restartPolicyy: unknown field "restartPolicyy"'],
  )
  assert.deepEqual(
    await apiSchemaProblems(
      pod({ volumes: [{ name: 's', secret: { secretName: 's', defaultMode: '0440' } }] }),
    ),
    ['/spec/volumes/0/secret/defaultMode: type {"type":"integer"}'],
  )
  assert.deepEqual(
    await apiSchemaProblems({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd' }, spec: {} }),
    ['/spec: required {"missingProperty":"selector"}', '/spec: required {"missingProperty":"template"}'],
  )
  assert.deepEqual(await apiSchemaProblems({ apiVersion: 'example.com/v1', kind: 'Widget' }), [
    'no schema for example.com/v1 Widget',
  ])
})
