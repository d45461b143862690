import { test } from 'node:test'
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { SidecarError } from '../../sidecar/src/core/errors.ts'
import { createLogger } from '../../sidecar/src/core/log.ts'
import { buildCsr } from '../../sidecar/src/pki/csr.ts'
import { SoftwareKeyProvider, type BindingKey } from '../../sidecar/src/pki/key-provider.ts'
import { publicKeysMatch } from '../../sidecar/src/pki/x509.ts'
import { ImdsV2Client, mtlsTokenEndpoint, type PlatformMetadata } from '../../sidecar/src/upstream/imds/v2.ts'
import { FakeClock } from '../support/fake-clock.ts'
import { driveUntilSettled, setup } from './support.ts'

const system = { kind: 'system' } as const
const keyPromise = new SoftwareKeyProvider().generate()

async function csrFor(key: BindingKey, md: PlatformMetadata): Promise<string> {
  return buildCsr({
    clientId: md.clientId,
    tenantId: md.tenantId,
    cuIdJson: md.cuIdJson,
    publicKeyPem: key.publicKeyPem,
    signPss: (d) => key.signPss(d),
  })
}

async function rejectsWith(promise: Promise<unknown>, check: (e: SidecarError) => void): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof SidecarError, `expected a SidecarError, got ${String(error)}`)
    check(error)
    return true
  })
}

test('getplatformmetadata then issuecredential: a certificate for our key, and the token URL', async (t) => {
  const { imds, runtime } = await setup(t)
  const client = new ImdsV2Client({ runtime, imdsEndpoint: `${imds.url}/` })
  const md = await client.getPlatformMetadata(system)
  const sai = imds.state.managedIdentities[0]!
  assert.equal(md.clientId, sai.clientId)
  assert.equal(md.tenantId, imds.state.tenantId)
  assert.equal(md.cuIdJson, JSON.stringify({ vmId: imds.state.cuId.vmId }))
  assert.match(md.attestationEndpoint, /^https:/)

  const key = await keyPromise
  const issued = await client.issueCredential(system, await csrFor(key, md))
  assert.ok(publicKeysMatch(issued.certificateDer, key.publicKeyPem))
  assert.equal(issued.clientId, sai.clientId)
  assert.equal(issued.identityType, 'SystemAssigned')
  assert.equal(issued.tokenEndpoint, `https://127.0.0.1:4443/${imds.state.tenantId}/oauth2/v2.0/token`)
  const subject = new X509Certificate(issued.certificateDer).subject
  assert.ok(subject.includes(`CN=${sai.clientId}`) && subject.includes(`DC=${imds.state.tenantId}`))
  assert.equal(imds.state.calls.count('imds.getplatformmetadata'), 1)
  assert.equal(imds.state.calls.count('imds.issuecredential'), 1)
  const metrics = await runtime.metrics.registry.getSingleMetricAsString(
    'credential_sidecar_upstream_request_duration_seconds',
  )
  assert.match(metrics, /endpoint="imds.getplatformmetadata",status="200"/)
  assert.match(metrics, /endpoint="imds.issuecredential",status="200"/)
})

test('user-assigned selectors: client_id, object_id and mi_res_id (v2 spelling)', async (t) => {
  const { imds, runtime } = await setup(t)
  const client = new ImdsV2Client({ runtime, imdsEndpoint: imds.url })
  const uami = imds.state.managedIdentities[1]!
  for (const selector of [
    { kind: 'clientId', value: uami.clientId },
    { kind: 'objectId', value: uami.objectId },
    { kind: 'resourceId', value: uami.resourceId },
  ] as const) {
    const md = await client.getPlatformMetadata(selector)
    assert.equal(md.clientId, uami.clientId, selector.kind)
  }
  const md = await client.getPlatformMetadata({ kind: 'resourceId', value: uami.resourceId })
  const get = imds.requests.at(-1)!
  assert.equal(get.url.pathname, '/metadata/identity/getplatformmetadata')
  assert.equal(get.url.searchParams.get('cred-api-version'), '2.0')
  assert.equal(get.url.searchParams.get('mi_res_id'), uami.resourceId)
  assert.equal(get.url.searchParams.has('msi_res_id'), false)
  const issued = await client.issueCredential(
    { kind: 'resourceId', value: uami.resourceId },
    await csrFor(await keyPromise, md),
  )
  assert.equal(issued.identityType, 'UserAssigned')
  const post = imds.requests.at(-1)!
  assert.equal(post.method, 'POST')
  assert.equal(post.url.searchParams.get('mi_res_id'), uami.resourceId)
  assert.equal(post.headers.get('content-type'), 'application/json')
  const sent = JSON.parse(post.body) as Record<string, unknown>
  assert.deepEqual(Object.keys(sent), ['csr'])
  assert.match(String(sent['csr']), /^[A-Za-z0-9+/]+={0,2}$/)
  for (const r of imds.requests) {
    assert.equal(r.headers.get('metadata'), 'true')
    assert.match(
      r.headers.get('x-ms-client-request-id') ?? '',
      /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
    )
  }
})

test('a response without an IMDS Server header is refused', async (t) => {
  const { imds, runtime } = await setup(t, { serverHeader: 'nginx/1.25' })
  const client = new ImdsV2Client({ runtime, imdsEndpoint: imds.url })
  await rejectsWith(client.getPlatformMetadata(system), (e) => {
    assert.equal(e.code, 'upstream_error')
    assert.match(e.message, /Server header/)
  })
})

test('missing Server header is refused too', async (t) => {
  const { imds, runtime } = await setup(t, { serverHeader: null })
  const client = new ImdsV2Client({ runtime, imdsEndpoint: imds.url })
  await rejectsWith(client.getPlatformMetadata(system), (e) => assert.equal(e.code, 'upstream_error'))
})

test('platform metadata missing a field is malformed', async (t) => {
  const { imds, runtime } = await setup(t)
  const client = new ImdsV2Client({ runtime, imdsEndpoint: imds.url })
  const body = { cuId: { vmId: 'v' }, clientId: 'c', tenantId: 't', attestationEndpoint: 'https://a' }
  for (const drop of ['cuId', 'clientId', 'tenantId', 'attestationEndpoint'] as const) {
    const partial: Record<string, unknown> = { ...body }
    delete partial[drop]
    imds.state.faults.script('imds.getplatformmetadata', [{ status: 200, body: partial }])
    await rejectsWith(client.getPlatformMetadata(system), (e) => {
      assert.equal(e.reason, 'malformed_response')
      assert.ok(e.message.includes(drop), e.message)
    })
  }
  imds.state.faults.script('imds.getplatformmetadata', [
    { status: 200, body: { ...body, cuId: { vmId: null } } },
  ])
  await rejectsWith(client.getPlatformMetadata(system), (e) => assert.equal(e.reason, 'malformed_response'))
})

test('404 on getplatformmetadata during acquisition: retried 1 s, 2 s, 4 s, then "no IMDS v2"', async (t) => {
  const clock = new FakeClock()
  const lines: string[] = []
  const logger = createLogger({ level: 'debug', destination: { write: (l: string) => void lines.push(l) } })
  const { imds, runtime } = await setup(t, { clock, logger, settings: { imdsV2Enabled: false } })
  const client = new ImdsV2Client({ runtime, imdsEndpoint: imds.url })
  const started = clock.now()
  await rejectsWith(driveUntilSettled(clock, client.getPlatformMetadata(system), 250), (e) => {
    assert.equal(e.code, 'upstream_error')
    assert.equal(e.reason, 'imds_v2_unavailable')
    assert.match(e.message, /404 after retries: this host has no IMDS v2/)
    assert.match(e.message, /mTLS PoP/)
  })
  assert.equal(imds.state.calls.count('imds.getplatformmetadata'), 4, 'first try + 3 retries')
  const retries = lines
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => r['msg'] === 'retrying IMDS v2 call')
  // random() = 0.5: no jitter, so the IMDS policy's schedule shows exactly.
  assert.deepEqual(
    retries.map((r) => [r['failure'], r['delay_ms']]),
    [
      [404, 1000],
      [404, 2000],
      [404, 4000],
    ],
  )
  assert.ok(clock.now() - started >= 7000)
})

test('404 on getplatformmetadata in a probe (doctor): answered at once, not retried', async (t) => {
  const { imds, runtime } = await setup(t, { settings: { imdsV2Enabled: false } })
  const client = new ImdsV2Client({ runtime, imdsEndpoint: imds.url })
  await rejectsWith(client.getPlatformMetadata(system, undefined, { probe: true }), (e) => {
    assert.equal(e.reason, 'imds_v2_unavailable')
    assert.match(e.message, /answered 404: this host has no IMDS v2/)
  })
  assert.equal(imds.state.calls.count('imds.getplatformmetadata'), 1)
})

test('a transient 404 on getplatformmetadata and on issuecredential is retried and the mint succeeds', async (t) => {
  const clock = new FakeClock()
  const { imds, runtime } = await setup(t, { clock })
  const client = new ImdsV2Client({ runtime, imdsEndpoint: imds.url })
  const notFound = { status: 404, body: { error: 'not_found', error_description: 'Not found' } }
  imds.state.faults.script('imds.getplatformmetadata', [notFound, notFound])
  const md = await driveUntilSettled(clock, client.getPlatformMetadata(system))
  assert.equal(imds.state.calls.count('imds.getplatformmetadata'), 3)
  imds.state.faults.script('imds.issuecredential', [notFound])
  const key = await new SoftwareKeyProvider().generate()
  const issued = await driveUntilSettled(clock, client.issueCredential(system, await csrFor(key, md)))
  assert.equal(issued.clientId, md.clientId)
  assert.equal(imds.state.calls.count('imds.issuecredential'), 2)
})

test('404 on issuecredential that persists: "no IMDS v2" after the retries', async (t) => {
  const clock = new FakeClock()
  const { imds, runtime } = await setup(t, { clock })
  const client = new ImdsV2Client({ runtime, imdsEndpoint: imds.url })
  const notFound = { status: 404 }
  imds.state.faults.script('imds.issuecredential', [notFound, notFound, notFound, notFound])
  await rejectsWith(driveUntilSettled(clock, client.issueCredential(system, 'AAAA'), 1000), (e) => {
    assert.equal(e.reason, 'imds_v2_unavailable')
    assert.match(e.message, /after retries/)
  })
  assert.equal(imds.state.calls.count('imds.issuecredential'), 4)
})

test('500 then success: retried after the backoff on a fake clock', async (t) => {
  const clock = new FakeClock()
  const { imds, runtime } = await setup(t, { clock })
  const client = new ImdsV2Client({ runtime, imdsEndpoint: imds.url })
  imds.state.faults.script('imds.getplatformmetadata', [{ status: 500 }, { status: 503 }])
  const started = clock.now()
  const md = await driveUntilSettled(clock, client.getPlatformMetadata(system))
  assert.equal(md.tenantId, imds.state.tenantId)
  assert.equal(imds.state.calls.count('imds.getplatformmetadata'), 3)
  // 1 s then 2 s (±20 % jitter, here exactly: random() = 0.5).
  assert.ok(clock.now() - started >= 3000)
})

test('429 until retries run out: upstream_unavailable with Retry-After', async (t) => {
  const clock = new FakeClock()
  const { imds, runtime } = await setup(t, { clock })
  const client = new ImdsV2Client({ runtime, imdsEndpoint: imds.url })
  const throttled = { status: 429, headers: { 'Retry-After': '7' } }
  imds.state.faults.script('imds.issuecredential', [throttled, throttled, throttled, throttled])
  const outcome = driveUntilSettled(clock, client.issueCredential(system, 'AAAA'), 1000)
  await rejectsWith(outcome, (e) => {
    assert.equal(e.code, 'upstream_unavailable')
    assert.equal(e.reason, 'throttled')
    assert.equal(e.retryAfterSeconds, 7)
  })
  assert.equal(imds.state.calls.count('imds.issuecredential'), 4)
})

test('transport errors surface as SidecarErrors from sendHttp, after the retries', async (t) => {
  const clock = new FakeClock()
  const { runtime } = await setup(t, { clock })
  const client = new ImdsV2Client({ runtime, imdsEndpoint: 'http://127.0.0.1:1' })
  await rejectsWith(driveUntilSettled(clock, client.getPlatformMetadata(system), 1000), (e) => {
    assert.equal(e.code, 'upstream_unavailable')
    assert.equal(e.reason, 'connect_failure')
  })
  const metrics = await runtime.metrics.registry.getSingleMetricAsString(
    'credential_sidecar_upstream_request_duration_seconds',
  )
  assert.match(metrics, /_count\{endpoint="imds.getplatformmetadata",status="error"\} 4/)
})

test('token URL: trailing slashes trimmed, https only', () => {
  assert.equal(
    mtlsTokenEndpoint('https://westus3.mtlsauth.microsoft.com//', 'tid'),
    'https://westus3.mtlsauth.microsoft.com/tid/oauth2/v2.0/token',
  )
  assert.throws(() => mtlsTokenEndpoint('http://mtlsauth.microsoft.com', 'tid'), /https/)
})
