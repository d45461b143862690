import { test } from 'node:test'
import assert from 'node:assert/strict'
import { decodeJwt } from 'jose'
import { Agent, request } from 'undici'
import { certificateInfo, x5tS256 } from '../../sidecar/src/pki/x509.ts'
import { json, startStack, type Stack } from '../support/stack.ts'
import { FakeClock } from '../support/fake-clock.ts'
import { driveUntilSettled } from '../imds-v2/support.ts'

const popIdentity = 'identities:\n  mi:\n    managedIdentity: {}\n    protocolScheme: MTLS_POP\n'

async function popToken(stack: Stack, query = '') {
  const res = await stack.get(`/token?resource=${stack.emulator.resourceAudience}${query}`)
  assert.equal(res.status, 200)
  return json(res)
}

/** Calls the demo resource over TLS, presenting `cert` (or nothing). */
async function callResource(
  stack: Stack,
  authorization: string,
  cert?: { certificate: string; private_key: string },
) {
  const agent = new Agent({
    connect: { ca: stack.emulator.caPem, ...(cert ? { cert: cert.certificate, key: cert.private_key } : {}) },
  })
  try {
    const res = await request(`${stack.emulator.resourceUrl}/api/whoami`, {
      dispatcher: agent,
      headers: { authorization },
    })
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, any> }
  } finally {
    await agent.close()
  }
}

test('MTLS_POP: /token returns an mtls_pop token whose cnf is the served binding certificate', async (t) => {
  const stack = await startStack(t, { configYaml: () => popIdentity })
  const body = await popToken(stack)
  assert.equal(body.token_type, 'mtls_pop')
  const cert = body.binding_certificate
  assert.ok(cert, 'binding_certificate present')
  assert.equal(cert['x5t#S256'], x5tS256(cert.certificate))
  assert.equal((decodeJwt(body.access_token)['cnf'] as Record<string, string>)['x5t#S256'], cert['x5t#S256'])
  assert.match(cert.private_key, /^-----BEGIN PRIVATE KEY-----/)
  assert.equal(cert.key_protection, 'software')
  const info = certificateInfo(cert.certificate)
  assert.equal(cert.not_after, Math.floor(info.notAfter / 1000))
  const { clientId } = stack.emulator.state.managedIdentities[0]!
  assert.match(info.subject, new RegExp(`CN=${clientId}`))
  assert.match(info.subject, new RegExp(`DC=${stack.emulator.state.tenantId}`))
})

test('the demo resource accepts the token with its certificate and rejects a different one or none', async (t) => {
  const stack = await startStack(t, { configYaml: () => popIdentity })
  const body = await popToken(stack)
  const good = await callResource(stack, `mtls_pop ${body.access_token}`, body.binding_certificate)
  assert.equal(good.status, 200)
  assert.equal(good.body['scheme'], 'mtls_pop')
  const other = await stack.emulator.state.ca.issueWithNewKey({
    subject: [{ shortName: 'CN', value: 'thief' }],
    usage: 'client',
    validityMs: 3600_000,
  })
  assert.equal(
    (
      await callResource(stack, `mtls_pop ${body.access_token}`, {
        certificate: other.certificatePem,
        private_key: other.privateKeyPem,
      })
    ).status,
    401,
  )
  assert.equal((await callResource(stack, `mtls_pop ${body.access_token}`)).status, 401)
  assert.equal(
    (await callResource(stack, `Bearer ${body.access_token}`)).status,
    401,
    'a PoP token is no Bearer token',
  )
})

test('300 concurrent cold /token calls make one issuecredential and one token call', async (t) => {
  const stack = await startStack(t, { configYaml: () => popIdentity })
  const bodies = await Promise.all(Array.from({ length: 300 }, () => popToken(stack)))
  assert.equal(new Set(bodies.map((b) => b.access_token)).size, 1)
  const calls = stack.emulator.state.calls
  assert.equal(calls.count('imds.getplatformmetadata'), 1)
  assert.equal(calls.count('imds.issuecredential'), 1)
  assert.equal(calls.count('entra.mtls.token'), 1)
})

test('tokens for different resources share the binding certificate', async (t) => {
  const stack = await startStack(t, { configYaml: () => popIdentity })
  const a = await popToken(stack)
  const b = await json(await stack.get('/token?resource=https://graph.microsoft.com'))
  assert.equal(a.binding_certificate['x5t#S256'], b.binding_certificate['x5t#S256'])
  assert.notEqual(a.access_token, b.access_token)
  assert.equal(stack.emulator.state.calls.count('imds.issuecredential'), 1)
})

test('invalid_client from Entra: the certificate is re-minted and the request retried once', async (t) => {
  const stack = await startStack(t, { configYaml: () => popIdentity })
  stack.emulator.state.faults.script('entra.mtls.token', [
    {
      status: 401,
      body: {
        error: 'invalid_client',
        error_description: 'AADSTS700027: Client assertion failed signature validation.',
        error_codes: [700027],
      },
    },
  ])
  const body = await popToken(stack)
  assert.equal(body.token_type, 'mtls_pop')
  assert.equal(stack.emulator.state.calls.count('imds.issuecredential'), 2, 'a second certificate was minted')
  assert.equal(stack.emulator.state.calls.count('entra.mtls.token'), 2)
  assert.equal(
    (decodeJwt(body.access_token)['cnf'] as Record<string, string>)['x5t#S256'],
    body.binding_certificate['x5t#S256'],
  )
  assert.match(stack.logs.text, /minting a fresh one and retrying once/)
})

test('invalid_client twice is a 502 with the AADSTS codes passed through', async (t) => {
  const stack = await startStack(t, { configYaml: () => popIdentity })
  const fault = {
    status: 401,
    body: {
      error: 'invalid_client',
      error_description: 'AADSTS700027: bad cert',
      error_codes: [700027],
      trace_id: 'trace-1',
      correlation_id: 'b7f8c7c4-0000-4000-8000-000000000001',
    },
  }
  stack.emulator.state.faults.script('entra.mtls.token', [fault, fault])
  const res = await stack.get(`/token?resource=${stack.emulator.resourceAudience}`)
  assert.equal(res.status, 502)
  const body = await json(res)
  assert.equal(body.error, 'upstream_error')
  assert.deepEqual(body.error_codes, [700027])
  assert.equal(body.trace_id, 'trace-1')
  assert.equal(body.correlation_id, 'b7f8c7c4-0000-4000-8000-000000000001')
})

test('a Bearer answer to an mtls_pop request is refused (fail closed)', async (t) => {
  const stack = await startStack(t, {
    configYaml: () => popIdentity,
    emulator: { settings: { entraIgnoresPopRequest: true } },
  })
  const res = await stack.get(`/token?resource=${stack.emulator.resourceAudience}`)
  assert.equal(res.status, 502)
  const body = await json(res)
  assert.equal(body.error, 'upstream_error')
  assert.match(body.error_description, /token_type|mtls_pop/i)
  assert.equal(body.access_token, undefined)
})

test('allowBearerFallback serves the Bearer answer, counted in metrics', async (t) => {
  const stack = await startStack(t, {
    configYaml: () => `${popIdentity}    allowBearerFallback: true\n`,
    emulator: { settings: { entraIgnoresPopRequest: true } },
  })
  const body = await popToken(stack)
  assert.equal(body.token_type, 'Bearer')
  assert.equal(body.binding_certificate, undefined)
  const metrics = await (await fetch(`${stack.url}/metrics`)).text()
  assert.match(metrics, /credential_sidecar_bearer_fallback_total\{identity="mi"\} 1/)
})

test('exposePrivateKey: false omits the private key from /token and /credential', async (t) => {
  const stack = await startStack(t, {
    configYaml: () => `callers:\n  exposePrivateKey: false\n${popIdentity}`,
  })
  const body = await popToken(stack)
  assert.equal(body.binding_certificate.private_key, undefined)
  assert.ok(body.binding_certificate.certificate)
  const credential = await json(await stack.get('/credential'))
  assert.equal(credential.binding_certificate.private_key, undefined)
})

test('useBoundCredential with Bearer: a Bearer token obtained over the IMDS v2 certificate', async (t) => {
  const stack = await startStack(t, {
    configYaml: () => 'identities:\n  mi:\n    managedIdentity: {}\n    useBoundCredential: true\n',
  })
  const body = await json(await stack.get('/token?resource=https://management.azure.com'))
  assert.equal(body.token_type, 'Bearer')
  assert.equal(body.binding_certificate, undefined)
  assert.equal(decodeJwt(body.access_token)['cnf'], undefined)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0, 'IMDS v1 not used')
  assert.equal(stack.emulator.state.calls.count('imds.issuecredential'), 1)
  const credential = await json(await stack.get('/credential'))
  assert.ok(credential.binding_certificate['x5t#S256'])
})

test('/credential returns the bound credential bundle; 409 for an IMDS v1 identity', async (t) => {
  const stack = await startStack(t, {
    configYaml: () => `defaultIdentity: mi\n${popIdentity}  v1:\n    managedIdentity: {}\n`,
  })
  const res = await stack.get('/credential')
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('cache-control'), 'no-store')
  const body = await json(res)
  const { state } = stack.emulator
  assert.equal(body.identity, 'mi')
  assert.equal(body.client_id, state.managedIdentities[0]!.clientId)
  assert.equal(body.tenant_id, state.tenantId)
  assert.equal(body.token_endpoint, `${stack.emulator.entraMtlsUrl}/${state.tenantId}/oauth2/v2.0/token`)
  assert.equal(body.key_protection, 'software')
  assert.equal(body.binding_certificate['x5t#S256'], x5tS256(body.binding_certificate.certificate))
  const token = await popToken(stack)
  assert.equal(token.binding_certificate['x5t#S256'], body.binding_certificate['x5t#S256'])
  const v1 = await stack.get('/credential?identity=v1')
  assert.equal(v1.status, 409)
  assert.equal((await json(v1)).error, 'no_bound_credential')
  assert.equal((await stack.get('/credential')).status, 200)
  assert.equal((await fetch(`${stack.url}/credential`)).status, 400, 'Metadata header required')
})

test('a host without IMDS v2 gets a clear 502 after the IMDS retries, not a hang', async (t) => {
  const clock = new FakeClock()
  const stack = await startStack(t, {
    clock,
    configYaml: () => popIdentity,
    emulator: { settings: { imdsV2Enabled: false } },
  })
  const res = await driveUntilSettled(
    clock,
    stack.get(`/token?resource=${stack.emulator.resourceAudience}`),
    500,
  )
  assert.equal(res.status, 502)
  assert.match((await json(res)).error_description, /404 after retries: this host has no IMDS v2/)
  assert.equal(stack.emulator.state.calls.count('imds.getplatformmetadata'), 4)
})

test('attestation demanded by IMDS is a clear 502', async (t) => {
  const stack = await startStack(t, {
    configYaml: () => popIdentity,
    emulator: { settings: { requireAttestation: true } },
  })
  const res = await stack.get(`/token?resource=${stack.emulator.resourceAudience}`)
  assert.equal(res.status, 502)
  assert.match((await json(res)).error_description, /attestation/i)
})

test('no private key or token reaches the logs on the PoP path', async (t) => {
  const stack = await startStack(t, { configYaml: () => popIdentity })
  const body = await popToken(stack)
  await stack.get('/credential')
  const key = body.binding_certificate.private_key as string
  const keyBody = key.split('\n')[1]!
  assert.ok(!stack.logs.text.includes(keyBody))
  assert.ok(!stack.logs.text.includes(body.access_token))
  assert.doesNotMatch(stack.logs.text, /PRIVATE KEY|BEGIN CERTIFICATE/)
})
