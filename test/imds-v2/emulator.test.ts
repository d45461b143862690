import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SystemClock } from '../../sidecar/src/core/clock.ts'
import { imdsV2Routes } from '../../sidecar/src/emulator/imds-v2.ts'
import { createEmulatorState } from '../support/emulator.ts'
import { buildCsr, cuIdJson } from '../../sidecar/src/pki/csr.ts'
import { SoftwareKeyProvider } from '../../sidecar/src/pki/key-provider.ts'
import { certificateInfo } from '../../sidecar/src/pki/x509.ts'

// Route behaviour in process (app.request), as hono apps are tested; sockets are in client.test.ts.
const statePromise = createEmulatorState(new SystemClock(), { entraMtlsBaseUrl: 'https://127.0.0.1:4443' })
const md = '/metadata/identity/getplatformmetadata?cred-api-version=2.0'
const ic = '/metadata/identity/issuecredential?cred-api-version=2.0'
const headers = { Metadata: 'true' }

test('Metadata: true is required', async () => {
  const app = imdsV2Routes(await statePromise)
  const res = await app.request(md)
  assert.equal(res.status, 400)
  assert.deepEqual(await res.json(), {
    error: 'invalid_request',
    error_description: 'Required metadata header not specified',
  })
})

test('cred-api-version=2.0 is required', async () => {
  const app = imdsV2Routes(await statePromise)
  assert.equal((await app.request('/metadata/identity/getplatformmetadata', { headers })).status, 400)
  assert.equal(
    (await app.request('/metadata/identity/getplatformmetadata?cred-api-version=1.0', { headers })).status,
    400,
  )
})

test('platform metadata for the system-assigned identity, camelCase', async () => {
  const state = await statePromise
  const res = await imdsV2Routes(state).request(md, { headers })
  assert.equal(res.status, 200)
  const body = (await res.json()) as Record<string, unknown>
  assert.deepEqual(Object.keys(body), ['cuId', 'clientId', 'tenantId', 'attestationEndpoint'])
  assert.equal(body['clientId'], state.managedIdentities[0]?.clientId)
})

test('unknown selector: 400 Identity not found', async () => {
  const app = imdsV2Routes(await statePromise)
  for (const q of ['&client_id=nope', '&object_id=nope', '&mi_res_id=/subscriptions/x']) {
    const res = await app.request(md + q, { headers })
    assert.equal(res.status, 400)
    assert.deepEqual(await res.json(), { error: 'invalid_request', error_description: 'Identity not found' })
  }
})

test('issuecredential verifies the CSR and issues a client certificate from the CA', async () => {
  const state = await statePromise
  const app = imdsV2Routes(state)
  const key = await new SoftwareKeyProvider().generate()
  const uami = state.managedIdentities[2]!
  const csr = await buildCsr({
    clientId: uami.clientId,
    tenantId: state.tenantId,
    cuIdJson: cuIdJson(state.cuId),
    publicKeyPem: key.publicKeyPem,
    signPss: (d) => key.signPss(d),
  })
  const post = (q: string, body: unknown) =>
    app.request(ic + q, {
      method: 'POST',
      headers: { ...headers, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    })

  const wrongIdentity = await post('', { csr })
  assert.equal(wrongIdentity.status, 400)
  assert.match(
    ((await wrongIdentity.json()) as { error_description: string }).error_description,
    /Invalid CSR \(subject\)/,
  )

  const res = await post(`&object_id=${uami.objectId}`, { csr })
  assert.equal(res.status, 200)
  const body = (await res.json()) as Record<string, string>
  assert.deepEqual(Object.keys(body), [
    'client_id',
    'tenant_id',
    'certificate',
    'identity_type',
    'mtls_authentication_endpoint',
  ])
  assert.equal(body['identity_type'], 'UserAssigned')
  const info = certificateInfo(Buffer.from(body['certificate']!, 'base64'))
  // Back-dated a minute for clock skew; the configured life counts from issuance.
  assert.equal(info.notAfter - info.notBefore, state.settings.bindingCertificateValidityMs + 60_000)
  assert.ok(info.issuer.includes('emulator CA'))

  assert.equal((await post('', {})).status, 400)
})

test('imdsV2Enabled=false: 404; scripted faults answer instead', async () => {
  const state = await createEmulatorState(new SystemClock(), { imdsV2Enabled: false })
  const app = imdsV2Routes(state)
  assert.equal((await app.request(md, { headers })).status, 404)
  state.faults.script('imds.getplatformmetadata', [{ status: 503, headers: { 'Retry-After': '3' } }])
  const res = await app.request(md, { headers })
  assert.equal(res.status, 503)
  assert.equal(res.headers.get('retry-after'), '3')
  assert.equal(state.calls.count('imds.getplatformmetadata'), 2)
})
