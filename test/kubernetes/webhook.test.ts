import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Agent } from 'node:https'
import { connect } from 'node:tls'
import jsonPatch from 'fast-json-patch'
import { stringify } from 'yaml'
import { injectYaml } from '../../sidecar/src/cli/inject/inject.ts'
import type { InjectOptions } from '../../sidecar/src/cli/inject/options.ts'
import { InjectRefusal } from '../../sidecar/src/cli/inject/refusal.ts'
import { startProcess } from '../process/process.ts'
import { waitUntil } from '../support/wait-until.ts'
import { apiSchemaProblems } from './api-schema.ts'
import { readObjects } from './manifests.ts'
import { restrictedViolations } from './pod-security.ts'
import {
  admissionReview,
  call,
  patchOf,
  reviewFixture,
  startWebhook,
  TestPki,
  type Answer,
} from './webhook-support.ts'

const defaults: InjectOptions = {
  image: 'registry.example/credential-sidecar:0.1.0',
  protocolScheme: 'Bearer',
  workloadIdentity: false,
}

const pki = await TestPki.create()
const first = await pki.issue()
pki.replace(pki.certFile, first.cert)
pki.replace(pki.keyFile, first.key)

/** What `inject` writes for this pod with these options, read back as kubectl reads it. */
function injectedByCommand(pod: unknown, options: InjectOptions): Record<string, any> {
  return readObjects(injectYaml(stringify(pod, { version: '1.1' }), options))[0]!
}

/** The pod the API server stores: the review's object with the answer's patch applied (RFC 6902). */
function patched(pod: unknown, answer: Answer): Record<string, any> {
  const patch = patchOf(answer)
  assert.ok(patch, 'a patch')
  // validateOperation: each operation must be well formed and its path must exist where required.
  return jsonPatch.applyPatch(structuredClone(pod), patch as jsonPatch.Operation[], true, false)
    .newDocument as any
}

function assertAllowedWithoutPatch(answer: Answer, uid: string) {
  assert.equal(answer.status, 200)
  assert.equal(answer.body.apiVersion, 'admission.k8s.io/v1')
  assert.equal(answer.body.kind, 'AdmissionReview')
  assert.equal(answer.body.response.uid, uid)
  assert.equal(answer.body.response.allowed, true)
  assert.equal(answer.body.response.patch, undefined)
  assert.equal(answer.body.response.patchType, undefined)
}

async function assertInjectedAsCommand(answer: Answer, pod: unknown, options: InjectOptions) {
  assert.equal(answer.status, 200)
  assert.equal(answer.body.response.allowed, true)
  assert.equal(answer.body.response.patchType, 'JSONPatch')
  const result = patched(pod, answer)
  assert.deepEqual(result, injectedByCommand(pod, options))
  assert.deepEqual(await apiSchemaProblems(result), [])
  assert.deepEqual(restrictedViolations(result['spec'], result['metadata']), [])
  return result
}

test('a Pod CREATE as kube-apiserver sends it, over TLS: the patch makes exactly the pod inject makes, valid and restricted', async (t) => {
  const { server, logs } = await startWebhook(t, pki, defaults)
  const review = admissionReview()
  // kube-apiserver adds its timeout to the configured path.
  const answer = await call(server.url, pki.ca.certificatePem, { body: review, path: '/mutate?timeout=5s' })
  assert.equal(answer.body.response.uid, review['request']['uid'])
  assert.equal(answer.serial, first.serial)
  const pod = await assertInjectedAsCommand(answer, review['request']['object'], defaults)
  assert.equal(pod['spec']['initContainers'][0].name, 'credential-sidecar')
  assert.equal(pod['spec']['initContainers'][0].image, defaults.image)
  // Only what inject changes is in the patch: fields the API server set stay untouched.
  const paths = patchOf(answer)!.map((operation) => operation.path)
  assert.deepEqual(paths.sort(), ['/spec/containers', '/spec/initContainers'])

  const line = logs.find((entry) => entry['msg'] === 'review')!
  assert.equal(line['namespace'], 'team-a')
  assert.equal(line['pod'], 'web-5c6d8f7b9-', 'generateName when the pod has no name yet')
  assert.equal(line['decision'], 'injected')
  assert.equal(typeof line['durationMs'], 'number')
  assert.equal(logs.filter((entry) => entry['msg'] === 'review').length, 1, 'one line per review')

  // dryRun changes nothing: the webhook has no side effects (sideEffects: None).
  const dryRun = admissionReview((r) => (r['request']['dryRun'] = true))
  assert.deepEqual(patchOf(await call(server.url, pki.ca.certificatePem, { body: dryRun })), patchOf(answer))
})

test('opt-in and opt-out: the pod annotation enabled injects; disabled is allowed with no patch', async (t) => {
  const { server, logs } = await startWebhook(t, pki, defaults)
  const enabled = admissionReview((r) => {
    r['request']['object']['metadata']['annotations'] = { 'credential-sidecar.io/inject': 'enabled' }
  })
  await assertInjectedAsCommand(
    await call(server.url, pki.ca.certificatePem, { body: enabled }),
    enabled['request']['object'],
    defaults,
  )
  const disabled = admissionReview((r) => {
    r['request']['object']['metadata']['annotations'] = { 'credential-sidecar.io/inject': 'disabled' }
  })
  assertAllowedWithoutPatch(
    await call(server.url, pki.ca.certificatePem, { body: disabled }),
    disabled['request']['uid'],
  )
  assert.equal(logs.filter((entry) => entry['msg'] === 'review').at(-1)!['decision'], 'skipped')
})

test('per-pod annotations override the command-line defaults, as the same inject options would', async (t) => {
  const { server } = await startWebhook(t, pki, {
    ...defaults,
    clientId: '11111111-1111-1111-1111-111111111111',
  })
  const cases: [Record<string, string>, InjectOptions][] = [
    [
      {
        'credential-sidecar.io/protocol-scheme': 'MTLS_POP',
        'credential-sidecar.io/config-map': 'pop-config',
        'credential-sidecar.io/secret': 'caller',
        'credential-sidecar.io/image': 'other.example/credential-sidecar:9',
      },
      // The pod's ConfigMap leaves the default client id behind: the file decides.
      {
        image: 'other.example/credential-sidecar:9',
        protocolScheme: 'MTLS_POP',
        workloadIdentity: false,
        configMap: 'pop-config',
        secret: 'caller',
      },
    ],
    [
      { 'credential-sidecar.io/client-id': '22222222-2222-2222-2222-222222222222' },
      { ...defaults, clientId: '22222222-2222-2222-2222-222222222222' },
    ],
    [
      { 'credential-sidecar.io/workload-identity': 'true' },
      { ...defaults, clientId: '11111111-1111-1111-1111-111111111111', workloadIdentity: true },
    ],
  ]
  for (const [annotations, options] of cases) {
    const review = admissionReview((r) => (r['request']['object']['metadata']['annotations'] = annotations))
    const pod = await assertInjectedAsCommand(
      await call(server.url, pki.ca.certificatePem, { body: review }),
      review['request']['object'],
      options,
    )
    assert.equal(pod['metadata']['annotations']['credential-sidecar.io/inject'], undefined)
  }

  // An annotation inject would refuse as an option denies the pod, naming the annotation.
  for (const [annotations, message] of [
    [
      { 'credential-sidecar.io/protocol-scheme': 'pop' },
      /annotation credential-sidecar\.io\/protocol-scheme must be Bearer or MTLS_POP, not "pop"/,
    ],
    [
      { 'credential-sidecar.io/workload-identity': 'yes' },
      /annotation credential-sidecar\.io\/workload-identity must be "true" or "false"/,
    ],
    [
      { 'credential-sidecar.io/secret': 'Not_A_Name' },
      /annotation credential-sidecar\.io\/secret "Not_A_Name" is not a Kubernetes object name/,
    ],
  ] as const) {
    const review = admissionReview((r) => (r['request']['object']['metadata']['annotations'] = annotations))
    const answer = await call(server.url, pki.ca.certificatePem, { body: review })
    assert.equal(answer.status, 200)
    assert.equal(answer.body.response.allowed, false)
    assert.equal(answer.body.response.uid, review['request']['uid'])
    assert.match(answer.body.response.status.message, /^Pod team-a\/web-5c6d8f7b9-: /)
    assert.match(answer.body.response.status.message, message)
  }
})

test('idempotent: the patched pod sent again (reinvocation), or a pod inject already wrote, gets no patch', async (t) => {
  const { server, logs } = await startWebhook(t, pki, defaults)
  const review = admissionReview()
  const pod = patched(
    review['request']['object'],
    await call(server.url, pki.ca.certificatePem, { body: review }),
  )
  const again = admissionReview((r) => (r['request']['object'] = pod))
  assertAllowedWithoutPatch(
    await call(server.url, pki.ca.certificatePem, { body: again }),
    again['request']['uid'],
  )
  assert.equal(logs.filter((entry) => entry['msg'] === 'review').at(-1)!['decision'], 'unchanged')

  const byCommand = injectedByCommand(review['request']['object'], { ...defaults, secret: 'other' })
  const fromCommand = admissionReview((r) => (r['request']['object'] = byCommand))
  assertAllowedWithoutPatch(
    await call(server.url, pki.ca.certificatePem, { body: fromCommand }),
    fromCommand['request']['uid'],
  )
})

test('a pod inject would refuse is denied with inject’s message', async (t) => {
  const { server, logs } = await startWebhook(t, pki, defaults)
  const cases: [(pod: Record<string, any>) => void, RegExp][] = [
    [(pod) => (pod['spec']['hostNetwork'] = true), /hostNetwork pods share the node's loopback/],
    [
      (pod) => (pod['metadata']['labels']['azure.workload.identity/use'] = 'true'),
      /the pod is labelled azure\.workload\.identity\/use: "true".*--workload-identity/,
    ],
    [(pod) => (pod['spec']['containers'][0]['ports'] = [{ containerPort: 7781 }]), /uses port 7781/],
    [(pod) => (pod['spec']['containers'] = 'web'), /spec\.containers is missing or empty/],
  ]
  for (const [change, message] of cases) {
    const review = admissionReview((r) => change(r['request']['object']))
    const answer = await call(server.url, pki.ca.certificatePem, { body: review })
    assert.equal(answer.status, 200)
    assert.equal(answer.body.response.uid, review['request']['uid'])
    assert.equal(answer.body.response.allowed, false)
    assert.equal(answer.body.response.status.code, 403)
    const text = answer.body.response.status.message as string
    assert.match(text, message)
    // The same words inject says for the same pod, after the part that names where the pod came from.
    let commandMessage = ''
    try {
      injectYaml(stringify(review['request']['object'], { version: '1.1' }), defaults)
    } catch (error) {
      assert.ok(error instanceof InjectRefusal)
      commandMessage = error.message
    }
    assert.ok(commandMessage, 'inject refuses it too')
    assert.equal(text.slice(text.indexOf(': ') + 2), commandMessage.slice(commandMessage.indexOf('): ') + 3))
  }
  assert.deepEqual(
    logs.filter((entry) => entry['msg'] === 'review').map((entry) => entry['decision']),
    ['denied', 'denied', 'denied', 'denied'],
  )
})

test('not a Pod CREATE: allowed with no patch (UPDATE, a subresource, another kind)', async (t) => {
  const { server } = await startWebhook(t, pki, defaults)
  for (const change of [
    (r: Record<string, any>) => {
      r['request']['operation'] = 'UPDATE'
      r['request']['oldObject'] = r['request']['object']
    },
    (r: Record<string, any>) => (r['request']['subResource'] = 'ephemeralcontainers'),
    (r: Record<string, any>) => {
      r['request']['kind'] = { group: 'apps', version: 'v1', kind: 'Deployment' }
      r['request']['resource'] = { group: 'apps', version: 'v1', resource: 'deployments' }
    },
  ]) {
    const review = admissionReview(change)
    assertAllowedWithoutPatch(
      await call(server.url, pki.ca.certificatePem, { body: review }),
      review['request']['uid'],
    )
  }
})

test('malformed reviews are 400 (with the uid when there is one); oversized ones 413; other methods and paths refused', async (t) => {
  const { server, logs } = await startWebhook(t, pki, defaults, { maxBodyBytes: 64 * 1024 })
  const ca = pki.ca.certificatePem
  const notJson = await call(server.url, ca, { raw: '{"kind": "AdmissionReview", ' })
  assert.equal(notJson.status, 400)
  assert.equal(notJson.body.response.allowed, false)
  assert.match(notJson.body.response.status.message, /not JSON/)

  const v1beta1 = await call(server.url, ca, {
    body: admissionReview((r) => (r['apiVersion'] = 'admission.k8s.io/v1beta1')),
  })
  assert.equal(v1beta1.status, 400)
  assert.match(v1beta1.body.response.status.message, /expected an AdmissionReview admission\.k8s\.io\/v1/)

  const noUid = await call(server.url, ca, { body: admissionReview((r) => delete r['request']['uid']) })
  assert.equal(noUid.status, 400)
  assert.match(noUid.body.response.status.message, /request\.uid/)

  const badObject = admissionReview((r) => (r['request']['object'] = 'a pod'))
  const bad = await call(server.url, ca, { body: badObject })
  assert.equal(bad.status, 400)
  assert.equal(
    bad.body.response.uid,
    badObject['request']['uid'],
    'the uid is echoed whenever it was readable',
  )

  for (const body of [null, [], 'text', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }]) {
    const answer = await call(server.url, ca, { body })
    assert.equal(answer.status, 400, JSON.stringify(body))
  }

  const huge = admissionReview(
    (r) => (r['request']['object']['metadata']['annotations'] = { big: 'x'.repeat(100_000) }),
  )
  const tooLarge = await call(server.url, ca, { body: huge })
  assert.equal(tooLarge.status, 413)
  const tooLargeChunked = await call(server.url, ca, { body: huge, chunked: true })
  assert.equal(tooLargeChunked.status, 413, 'counted when no length is declared')
  const chunked = await call(server.url, ca, { body: admissionReview(), chunked: true })
  assert.equal(chunked.body.response.allowed, true)

  assert.equal((await call(server.url, ca, { method: 'GET' })).status, 405)
  assert.equal((await call(server.url, ca, { path: '/other', body: admissionReview() })).status, 404)
  // Still serving after all that.
  assert.equal((await call(server.url, ca, { body: admissionReview() })).body.response.allowed, true)
  assert.ok(logs.filter((entry) => entry['decision'] === 'malformed').length >= 8)
})

test('a request that does not arrive in time is cut off (408), and the server keeps serving', async (t) => {
  const { server } = await startWebhook(t, pki, defaults, { requestTimeoutMs: 500 })
  const { port } = new URL(server.url)
  const socket = connect({
    host: '127.0.0.1',
    port: Number(port),
    ca: pki.ca.certificatePem,
    servername: 'credential-sidecar-webhook.credential-sidecar-system.svc',
  })
  t.after(() => socket.destroy())
  await new Promise((resolve) => socket.once('secureConnect', resolve))
  socket.write(
    'POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"kind":',
  )
  let received = ''
  socket.on('data', (chunk) => (received += chunk))
  const started = Date.now()
  await new Promise((resolve) => socket.once('close', resolve))
  assert.ok(Date.now() - started < 5000)
  assert.match(received, /^HTTP\/1\.1 408/)
  assert.equal((await call(server.url, pki.ca.certificatePem, { body: admissionReview() })).status, 200)
})

test('health, readiness and metrics on the same listener; readiness fails when closing', async (t) => {
  const { server } = await startWebhook(t, pki, defaults)
  const ca = pki.ca.certificatePem
  await call(server.url, ca, { body: admissionReview() })
  await call(server.url, ca, {
    body: admissionReview((r) => (r['request']['object']['spec']['hostNetwork'] = true)),
  })
  await call(server.url, ca, { raw: 'nope' })
  assert.equal((await call(server.url, ca, { method: 'GET', path: '/healthz' })).status, 200)
  assert.equal((await call(server.url, ca, { method: 'GET', path: '/readyz' })).status, 200)
  const metrics = (await call(server.url, ca, { method: 'GET', path: '/metrics' })).body as string
  assert.match(metrics, /credential_sidecar_webhook_reviews_total\{decision="injected"\} 1/)
  assert.match(metrics, /credential_sidecar_webhook_reviews_total\{decision="denied"\} 1/)
  assert.match(metrics, /credential_sidecar_webhook_reviews_total\{decision="malformed"\} 1/)
  assert.match(metrics, /credential_sidecar_webhook_reviews_total\{decision="skipped"\} 0/)
  assert.match(metrics, /credential_sidecar_webhook_review_duration_seconds_count\{decision="injected"\} 1/)

  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.after(() => agent.destroy())
  assert.equal((await call(server.url, ca, { method: 'GET', path: '/readyz', agent })).status, 200)
  const closing = server.close({ drainDelayMs: 300, graceMs: 1000 })
  assert.equal((await call(server.url, ca, { method: 'GET', path: '/readyz', agent })).status, 503)
  // Reviews are still answered while the Service takes the endpoint out.
  assert.equal((await call(server.url, ca, { body: admissionReview() })).status, 200)
  await closing
})

test('certificate rotation: new files are served from the next handshake, a mismatched half is not, no request fails', async (t) => {
  const { server, logs } = await startWebhook(t, pki, defaults)
  const ca = pki.ca.certificatePem
  const second = await pki.issue()
  const third = await pki.issue()
  const failures: unknown[] = []
  const serials = new Set<string>()
  let running = true
  // Fresh connections (a new handshake each) and one keep-alive connection, the whole time.
  const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 })
  t.after(() => keepAlive.destroy())
  const load = Promise.all(
    [undefined, undefined, keepAlive].map(async (agent) => {
      while (running) {
        try {
          const answer = await call(server.url, ca, { body: admissionReview(), ...(agent ? { agent } : {}) })
          if (answer.status !== 200 || answer.body.response.allowed !== true) failures.push(answer.body)
          serials.add(answer.serial)
        } catch (error) {
          failures.push(error)
        }
      }
    }),
  )
  const servedSerial = async () => (await call(server.url, ca, { method: 'GET', path: '/healthz' })).serial

  // The certificate alone first (as if the key were not written yet): the old pair keeps serving.
  pki.replace(pki.certFile, second.cert)
  await waitUntil(
    () => logs.some((entry) => entry['msg'] === 'serving certificate not reloaded; the previous one stays'),
    'the mismatch is seen',
  )
  assert.equal(await servedSerial(), first.serial)
  pki.replace(pki.keyFile, second.key)
  await waitUntil(async () => (await servedSerial()) === second.serial, 'the new certificate is served')

  // Both at once, as the kubelet swaps a Secret volume.
  pki.replace(pki.keyFile, third.key)
  pki.replace(pki.certFile, third.cert)
  await waitUntil(async () => (await servedSerial()) === third.serial, 'the third certificate is served')
  running = false
  await load
  assert.deepEqual(failures, [])
  assert.ok(serials.has(first.serial) && serials.has(third.serial), 'the load saw the rotation')
  // Put the first pair back for the other tests of this file.
  pki.replace(pki.certFile, first.cert)
  pki.replace(pki.keyFile, first.key)
})

test('the command: logs the real https URL, answers reviews, exits 0 on SIGTERM; bad command lines exit 2', async (t) => {
  const running = startProcess(t, [
    'webhook',
    '--tls-cert',
    pki.certFile,
    '--tls-key',
    pki.keyFile,
    '--listen',
    '127.0.0.1:0',
    '--image',
    defaults.image,
  ])
  const listening = await running.waitFor('listening')
  assert.match(listening['url'], /^https:\/\/127\.0\.0\.1:\d+$/)
  assert.notEqual(new URL(listening['url']).port, '0')
  const review = structuredClone(reviewFixture)
  await assertInjectedAsCommand(
    await call(listening['url'], pki.ca.certificatePem, { body: review }),
    review['request']['object'],
    defaults,
  )
  await running.waitFor('review')
  running.child.kill('SIGTERM')
  const { code } = await running.exit
  assert.equal(code, 0)

  for (const args of [
    ['webhook'],
    ['webhook', '--tls-cert', 'a', '--tls-key', 'b', '--listen', 'nope'],
    ['webhook', '--bogus'],
  ]) {
    const bad = startProcess(t, args)
    assert.equal((await bad.exit).code, 2, args.join(' '))
    assert.match(bad.stderr.join(''), /credential-sidecar webhook: .*see credential-sidecar webhook --help/)
  }
  for (const args of [
    ['webhook', '--help'],
    ['help', 'webhook'],
  ]) {
    const help = startProcess(t, args)
    assert.equal((await help.exit).code, 0)
    assert.match(help.stdout.join('\n'), /^Usage: credential-sidecar webhook --tls-cert FILE --tls-key FILE/)
  }
  const noCert = startProcess(t, [
    'webhook',
    '--tls-cert',
    '/nonexistent/tls.crt',
    '--tls-key',
    pki.keyFile,
    '--listen',
    '127.0.0.1:0',
  ])
  assert.equal((await noCert.exit).code, 1)
})
