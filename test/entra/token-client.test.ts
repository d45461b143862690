import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CertificateAuthority } from '../../sidecar/src/emulator/pki/certificate-authority.ts'
import { isSidecarError, type SidecarError } from '../../sidecar/src/core/errors.ts'
import {
  managedIdentityMtlsRequest,
  boundCertificateRequest,
  clientSecretRequest,
} from '../../sidecar/src/upstream/entra/requests.ts'
import { registerApp } from '../../sidecar/src/emulator/entra.ts'
import { signClientAssertion } from '../../sidecar/src/upstream/entra/client-assertion.ts'
import type { BindingCertificate } from '../../sidecar/src/model/binding.ts'
import { boundOrBearerFallback } from '../../sidecar/src/credentials/bearer-fallback.ts'
import {
  counterTotal,
  issueClientCertificate,
  rejectsWith,
  startEntraFixture,
  toBinding,
  type EntraFixture,
} from './helpers.ts'

const resource = 'https://management.azure.com'
const signal = () => AbortSignal.timeout(20_000)

/** The managed identity's mtls_pop request over a certificate the emulator issued for it. */
async function miPopRequest(f: EntraFixture, scope = resource) {
  const mi = f.state.managedIdentities[0]!
  const binding = await issueClientCertificate(f.state, mi.clientId)
  const req = managedIdentityMtlsRequest({
    tokenEndpoint: f.mtlsTokenUrl,
    clientId: mi.clientId,
    scope,
    binding,
    tokenType: 'mtls_pop',
    identityName: 'mi',
  })
  return { mi, binding, req }
}

function asSidecarError(error: unknown): SidecarError {
  assert.ok(isSidecarError(error), `expected a SidecarError, got ${String(error)}`)
  return error
}

test('managed identity mtls_pop leg: the token is bound to the presented certificate', async (t) => {
  const f = await startEntraFixture(t)
  const { mi, binding, req } = await miPopRequest(f, `${resource}/`)
  const before = f.clock.now()
  const token = await f.client.requestToken(req, signal())
  assert.equal(token.tokenType, 'mtls_pop')
  assert.equal(token.binding, binding)
  // expires_in arrives as the string "3599" from the mTLS endpoint; the token's exp (whole seconds)
  // may be up to a second earlier, and the smaller one wins.
  assert.ok(token.expiresOn >= before + 3598_000 && token.expiresOn <= f.clock.now() + 3599_000)
  assert.equal(token.refreshOn, undefined)
  const claims = await f.state.tokens.verify(token.accessToken, { audience: resource })
  assert.deepEqual(claims['cnf'], { 'x5t#S256': binding.x5tS256 })
  assert.equal(claims.sub, mi.objectId)
  assert.equal(claims['appid'], mi.clientId)
  assert.equal(claims['tid'], f.state.tenantId)
  assert.equal(f.state.calls.count('entra.mtls.token'), 1)
  const observed = await f.metrics.upstreamCalls.get()
  assert.ok(
    observed.values.some((v) => v.labels['endpoint'] === 'entra.mtls.token' && v.labels['status'] === '200'),
  )
})

test('managed identity bound Bearer leg (no token_type) gives a Bearer token without cnf; refresh_in is honoured', async (t) => {
  const f = await startEntraFixture(t, { refreshInSec: 1800 })
  const mi = f.state.managedIdentities[1]!
  const binding = await issueClientCertificate(f.state, mi.clientId)
  const req = managedIdentityMtlsRequest({
    tokenEndpoint: f.mtlsTokenUrl,
    clientId: mi.clientId,
    scope: resource,
    binding,
    tokenType: 'Bearer',
    identityName: 'mi',
  })
  const token = await f.client.requestToken(req, signal())
  assert.equal(token.tokenType, 'Bearer')
  const claims = await f.state.tokens.verify(token.accessToken, { audience: resource })
  assert.equal(claims['cnf'], undefined)
  assert.ok(token.refreshOn !== undefined && Math.abs(token.refreshOn - (f.clock.now() + 1800_000)) < 5000)
})

test('Bearer answered to an mtls_pop request fails closed, unless the Bearer fallback is allowed', async (t) => {
  const f = await startEntraFixture(t, { entraIgnoresPopRequest: true })
  const mi = f.state.managedIdentities[0]!
  const binding = await issueClientCertificate(f.state, mi.clientId)
  const base = {
    tokenEndpoint: f.mtlsTokenUrl,
    clientId: mi.clientId,
    scope: resource,
    binding,
    tokenType: 'mtls_pop' as const,
    identityName: 'mi-pop',
  }
  const refused = asSidecarError(
    await rejectsWith(f.client.requestToken(managedIdentityMtlsRequest(base), signal())),
  )
  assert.equal(refused.code, 'upstream_error')
  assert.equal(refused.reason, 'token_type_mismatch')
  assert.equal(await counterTotal(f.metrics, 'credential_sidecar_bearer_fallback_total'), 0)

  const request = managedIdentityMtlsRequest({ ...base, allowBearerFallback: true })
  const accepted = await f.client.requestToken(request, signal())
  assert.equal(accepted.tokenType, 'Bearer')
  // The client only accepts it: credentials/bearer-fallback.ts is the one place that counts.
  assert.equal(await counterTotal(f.metrics, 'credential_sidecar_bearer_fallback_total'), 0)

  const token = await boundOrBearerFallback(() => f.client.requestToken(request, signal()), {
    allowed: true,
    requested: 'mtls_pop',
    runtime: f.runtime,
    identity: 'mi-pop',
  })
  assert.equal(token.tokenType, 'Bearer')
  assert.equal(await counterTotal(f.metrics, 'credential_sidecar_bearer_fallback_total'), 1)
  const { values } = await f.metrics.bearerFallbacks.get()
  assert.equal(values[0]?.labels['identity'], 'mi-pop')
})

test('a client certificate from another CA is refused with invalid_client', async (t) => {
  const f = await startEntraFixture(t)
  const mi = f.state.managedIdentities[0]!
  const otherCa = await CertificateAuthority.create()
  const foreign = toBinding(
    await otherCa.issueWithNewKey({
      subject: [{ shortName: 'CN', value: mi.clientId }],
      usage: 'client',
      validityMs: 3600_000,
    }),
  )
  const req = managedIdentityMtlsRequest({
    tokenEndpoint: f.mtlsTokenUrl,
    clientId: mi.clientId,
    scope: resource,
    binding: foreign,
    tokenType: 'mtls_pop',
    identityName: 'mi',
  })
  const error = asSidecarError(await rejectsWith(f.client.requestToken(req, signal())))
  assert.equal(error.code, 'upstream_error')
  assert.equal(error.reason, 'invalid_client')
  assert.deepEqual(error.upstream?.errorCodes, [700027])
})

test('a certificate whose subject is another identity is refused', async (t) => {
  const f = await startEntraFixture(t)
  const [mi0, mi1] = f.state.managedIdentities
  const binding = await issueClientCertificate(f.state, mi1!.clientId)
  const req = managedIdentityMtlsRequest({
    tokenEndpoint: f.mtlsTokenUrl,
    clientId: mi0!.clientId,
    scope: resource,
    binding,
    tokenType: 'mtls_pop',
    identityName: 'mi',
  })
  const error = asSidecarError(await rejectsWith(f.client.requestToken(req, signal())))
  assert.equal(error.reason, 'invalid_client')
})

test('no client certificate on the mTLS host: 401 invalid_client with error codes, trace and correlation ids', async (t) => {
  const f = await startEntraFixture(t)
  const { req } = await miPopRequest(f)
  delete req.clientCertificate
  const error = asSidecarError(await rejectsWith(f.client.requestToken(req, signal())))
  assert.equal(error.code, 'upstream_error')
  assert.equal(error.reason, 'invalid_client')
  assert.equal(error.upstream?.status, 401)
  assert.equal(error.upstream?.error, 'invalid_client')
  assert.deepEqual(error.upstream?.errorCodes, [7000218])
  assert.match(error.upstream?.traceId ?? '', /^[0-9a-f-]{36}$/)
  assert.match(error.upstream?.correlationId ?? '', /^[0-9a-f-]{36}$/)
  assert.match(error.message, /AADSTS7000218/)
  assert.match(error.upstream?.errorDescription ?? '', /Trace ID: .* Correlation ID: .* Timestamp: /)
})

test('a 500 is retried once after about 1 s, then the token comes', async (t) => {
  const f = await startEntraFixture(t)
  f.state.faults.script('entra.mtls.token', [{ status: 500 }])
  const { req } = await miPopRequest(f)
  const token = await f.client.requestToken(req, signal())
  assert.equal(token.tokenType, 'mtls_pop')
  assert.equal(f.state.calls.count('entra.mtls.token'), 2)
  assert.equal(f.clock.sleeps.length, 1)
  assert.ok(f.clock.sleeps[0]! >= 800 && f.clock.sleeps[0]! <= 1200)
})

test('5xx after the retry → upstream_unavailable with Retry-After; 429 is not retried', async (t) => {
  const f = await startEntraFixture(t)
  const { req } = await miPopRequest(f)
  f.state.faults.script('entra.mtls.token', [
    { status: 503 },
    { status: 503, headers: { 'retry-after': '7' } },
  ])
  const unavailable = asSidecarError(await rejectsWith(f.client.requestToken(req, signal())))
  assert.equal(unavailable.code, 'upstream_unavailable')
  assert.equal(unavailable.reason, 'server_error')
  assert.equal(unavailable.retryAfterSeconds, 7)
  assert.deepEqual(unavailable.upstream?.errorCodes, [90033])

  f.state.calls.reset()
  f.state.faults.script('entra.mtls.token', [{ status: 429, headers: { 'retry-after': '30' } }])
  const throttled = asSidecarError(await rejectsWith(f.client.requestToken(req, signal())))
  assert.equal(throttled.code, 'upstream_unavailable')
  assert.equal(throttled.reason, 'throttled')
  assert.equal(throttled.retryAfterSeconds, 30)
  assert.equal(f.state.calls.count('entra.mtls.token'), 1)
})

test('malformed answers: non-JSON, missing access_token, unusable expires_in', async (t) => {
  const f = await startEntraFixture(t)
  const { req } = await miPopRequest(f)
  const cases = [
    { status: 200, body: '<html>proxy</html>' },
    { status: 400, body: 'Bad Request' },
    { status: 200, body: { token_type: 'mtls_pop', expires_in: '3599' } },
    { status: 200, body: { token_type: 'mtls_pop', expires_in: 'soon', access_token: 'x' } },
    // A 200 without token_type is an upstream error, not Bearer (nor PoP).
    { status: 200, body: { expires_in: '3599', access_token: 'x' } },
  ]
  for (const fault of cases) {
    f.state.faults.script('entra.mtls.token', [fault])
    const error = asSidecarError(await rejectsWith(f.client.requestToken(req, signal())))
    assert.equal(error.code, 'upstream_error', JSON.stringify(fault))
    assert.equal(error.reason, 'malformed_response', JSON.stringify(fault))
  }
})

test('token_type is compared case-insensitively; numeric expires_in accepted', async (t) => {
  const f = await startEntraFixture(t)
  const { req } = await miPopRequest(f)
  f.state.faults.script('entra.mtls.token', [
    { status: 200, body: { token_type: 'MTLS_POP', expires_in: 600, access_token: 'opaque' } },
  ])
  const token = await f.client.requestToken(req, signal())
  assert.equal(token.tokenType, 'mtls_pop')
  assert.ok(Math.abs(token.expiresOn - (f.clock.now() + 600_000)) < 5000)
})

test("invalid_scope is the caller's bad request; errors never carry the form body", async (t) => {
  const f = await startEntraFixture(t)
  const { binding, req } = await miPopRequest(f)
  req.form['scope'] = 'https://graph.microsoft.com/User.Read'
  const error = asSidecarError(await rejectsWith(f.client.requestToken(req, signal())))
  assert.equal(error.code, 'upstream_bad_request')
  assert.equal(error.upstream?.error, 'invalid_scope')
  assert.deepEqual(error.upstream?.errorCodes, [1002012])
  assert.ok(!JSON.stringify(error.upstream).includes(binding.privateKeyPem))
})

test('bound confidential client ("SNI"): registered certificate over mTLS → mtls_pop; unregistered → invalid_client', async (t) => {
  const f = await startEntraFixture(t)
  const cert = await issueClientCertificate(f.state, 'app-cert')
  const app = registerApp(f.state, { certificates: [cert.certificatePem] })
  const req = boundCertificateRequest({
    tokenEndpoint: f.mtlsTokenUrl,
    clientId: app.clientId,
    scope: resource,
    certificate: cert,
    tokenType: 'mtls_pop',
    identityName: 'app',
  })
  const token = await f.client.requestToken(req, signal())
  assert.equal(token.tokenType, 'mtls_pop')
  const claims = await f.state.tokens.verify(token.accessToken, { audience: resource })
  assert.deepEqual(claims['cnf'], { 'x5t#S256': cert.x5tS256 })
  assert.equal(claims['appid'], app.clientId)

  // Bearer over mTLS: the same certificate also signs a jwt-bearer assertion (x5c, aud = mTLS endpoint).
  const boundBearer = (assertion: string, certificate = cert) =>
    boundCertificateRequest({
      tokenEndpoint: f.mtlsTokenUrl,
      clientId: app.clientId,
      scope: resource,
      certificate,
      tokenType: 'Bearer',
      identityName: 'app',
      assertion,
    })
  const sign = (certificate: BindingCertificate, tokenEndpoint = f.mtlsTokenUrl) =>
    signClientAssertion({
      clientId: app.clientId,
      tokenEndpoint,
      certificatePem: certificate.certificatePem,
      privateKeyPem: certificate.privateKeyPem,
      sendX5C: true,
      clock: f.clock,
    })
  const bearer = await f.client.requestToken(boundBearer(await sign(cert)), signal())
  assert.equal(bearer.tokenType, 'Bearer')
  const claims2 = await f.state.tokens.verify(bearer.accessToken, { audience: resource })
  assert.equal(claims2['cnf'], undefined)

  // Entra requires the assertion for this flow.
  const withoutAssertion = boundBearer('x')
  delete withoutAssertion.form['client_assertion']
  delete withoutAssertion.form['client_assertion_type']
  const missing = asSidecarError(await rejectsWith(f.client.requestToken(withoutAssertion, signal())))
  assert.deepEqual(missing.upstream?.errorCodes, [7000218])
  // No x5c: refused.
  const noX5c = await signClientAssertion({
    clientId: app.clientId,
    tokenEndpoint: f.mtlsTokenUrl,
    certificatePem: cert.certificatePem,
    privateKeyPem: cert.privateKeyPem,
    sendX5C: false,
    clock: f.clock,
  })
  const refusedNoX5c = asSidecarError(await rejectsWith(f.client.requestToken(boundBearer(noX5c), signal())))
  assert.deepEqual(refusedNoX5c.upstream?.errorCodes, [700027])

  const stranger = await issueClientCertificate(f.state, 'other')
  const error = asSidecarError(
    await rejectsWith(
      f.client.requestToken(
        boundCertificateRequest({
          tokenEndpoint: f.mtlsTokenUrl,
          clientId: app.clientId,
          scope: resource,
          certificate: stranger,
          tokenType: 'mtls_pop',
          identityName: 'app',
        }),
        signal(),
      ),
    ),
  )
  assert.equal(error.reason, 'invalid_client')
  assert.deepEqual(error.upstream?.errorCodes, [700027])
})

test('one agent per certificate; evictBinding drops it', async (t) => {
  const f = await startEntraFixture(t)
  const mi = f.state.managedIdentities[0]!
  const first = await issueClientCertificate(f.state, mi.clientId)
  const second = await issueClientCertificate(f.state, mi.clientId)
  for (const binding of [first, second, first]) {
    const req = managedIdentityMtlsRequest({
      tokenEndpoint: f.mtlsTokenUrl,
      clientId: mi.clientId,
      scope: resource,
      binding,
      tokenType: 'mtls_pop',
      identityName: 'mi',
    })
    const token = await f.client.requestToken(req, signal())
    const claims = await f.state.tokens.verify(token.accessToken, { audience: resource })
    // Each request presents its own certificate, never a pooled connection of another one.
    assert.deepEqual(claims['cnf'], { 'x5t#S256': binding.x5tS256 })
  }
  f.client.evictBinding(first.x5tS256)
  const again = await f.client.requestToken(
    managedIdentityMtlsRequest({
      tokenEndpoint: f.mtlsTokenUrl,
      clientId: mi.clientId,
      scope: resource,
      binding: first,
      tokenType: 'mtls_pop',
      identityName: 'mi',
    }),
    signal(),
  )
  assert.equal(again.tokenType, 'mtls_pop')
})

test('an mTLS server that refuses the handshake surfaces reason tls_failure', async (t) => {
  const { createServer } = await import('node:https')
  const { issueLoopbackServerCertificate } = await import('../../sidecar/src/emulator/entra.ts')
  const { listenOnLoopback, closeServer } = await import('../../sidecar/src/emulator/loopback-server.ts')
  const f = await startEntraFixture(t)
  const { cert, key } = await issueLoopbackServerCertificate(f.state)
  // Demands a client certificate from a CA the client's certificate is not from.
  const otherCa = await CertificateAuthority.create()
  const server = createServer(
    {
      cert,
      key,
      ca: [otherCa.certificatePem],
      requestCert: true,
      rejectUnauthorized: true,
      maxVersion: 'TLSv1.2',
    },
    (_req, res) => res.end('{}'),
  )
  const url = await listenOnLoopback(server)
  t.after(() => closeServer(server))
  const mi = f.state.managedIdentities[0]!
  const binding = await issueClientCertificate(f.state, mi.clientId)
  const req = managedIdentityMtlsRequest({
    tokenEndpoint: `${url}/${f.state.tenantId}/oauth2/v2.0/token`,
    clientId: mi.clientId,
    scope: resource,
    binding,
    tokenType: 'mtls_pop',
    identityName: 'mi',
  })
  const error = asSidecarError(await rejectsWith(f.client.requestToken(req, signal())))
  assert.equal(error.reason, 'tls_failure')
})

test('logs name the identity but never carry tokens, assertions or keys', async (t) => {
  const { Writable } = await import('node:stream')
  const { createLogger } = await import('../../sidecar/src/core/log.ts')
  const { EntraTokenClient } = await import('../../sidecar/src/upstream/entra/token-client.ts')
  const lines: string[] = []
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'))
      cb()
    },
  })
  const f = await startEntraFixture(t, { entraIgnoresPopRequest: true })
  const runtime = { ...f.runtime, logger: createLogger({ level: 'debug', destination }) }
  const client = new EntraTokenClient({ runtime })
  t.after(() => client.close())
  const mi = f.state.managedIdentities[0]!
  const binding = await issueClientCertificate(f.state, mi.clientId)
  f.state.faults.script('entra.mtls.token', [{ status: 502 }])
  const request = managedIdentityMtlsRequest({
    tokenEndpoint: f.mtlsTokenUrl,
    clientId: mi.clientId,
    scope: resource,
    binding,
    tokenType: 'mtls_pop',
    allowBearerFallback: true,
    identityName: 'mi-logged',
  })
  // The Bearer answer is logged where it is counted, in the credential's fallback.
  const token = await boundOrBearerFallback(() => client.requestToken(request, signal()), {
    allowed: true,
    requested: 'mtls_pop',
    runtime,
    identity: 'mi-logged',
  })
  const text = lines.join('')
  assert.match(text, /retrying Entra token request/)
  assert.match(text, /allowBearerFallback/)
  assert.match(text, /mi-logged/)
  assert.ok(!text.includes(token.accessToken))
  assert.ok(!text.includes('PRIVATE KEY'))
})

test('a 200 without token_type is an upstream error for a Bearer request too', async (t) => {
  const f = await startEntraFixture(t)
  const app = registerApp(f.state, { clientSecrets: ['s3cret-value'] })
  f.state.faults.script('entra.token', [{ status: 200, body: { expires_in: 3599, access_token: 'x' } }])
  const error = asSidecarError(
    await rejectsWith(
      f.client.requestToken(
        clientSecretRequest({
          tokenEndpoint: f.tokenUrl,
          clientId: app.clientId,
          scope: resource,
          identityName: 'app',
          clientSecret: 's3cret-value',
        }),
        signal(),
      ),
    ),
  )
  assert.equal(error.code, 'upstream_error')
  assert.equal(error.reason, 'malformed_response')
  assert.match(error.message, /no token_type/)
})

test('AADSTS configuration refusals (3921996, 392196, 392199, 500181, 51000): 502 with the code and what to configure, no re-mint', async (t) => {
  const f = await startEntraFixture(t)
  const { req } = await miPopRequest(f)
  const cases: [number, number, string, string, RegExp][] = [
    [400, 3921996, 'invalid_request', 'binding_not_allowed', /allowBearerFallback: true on identity "mi"/],
    [400, 392196, 'invalid_request', 'entra_configuration', /resource is not enrolled for mTLS PoP/],
    [400, 392199, 'invalid_request', 'entra_configuration', /leg-1 assertion to be an mTLS PoP token/],
    [401, 500181, 'invalid_client', 'entra_configuration', /TLS client certificate differs/],
    [
      412,
      51000,
      'invalid_request',
      'entra_configuration',
      /mTLS client authentication .* is not enabled for this app in Entra/,
    ],
  ]
  for (const [status, code, error, reason, advice] of cases) {
    f.state.faults.script('entra.mtls.token', [
      {
        status,
        body: {
          error,
          error_description: `AADSTS${code}: refused. Trace ID: t Correlation ID: c`,
          error_codes: [code],
          trace_id: 'trace-1',
          correlation_id: 'corr-1',
        },
      },
    ])
    const refused = asSidecarError(await rejectsWith(f.client.requestToken(req, signal())))
    assert.equal(refused.code, 'upstream_error', String(code))
    assert.equal(refused.status, 502)
    assert.equal(refused.reason, reason, String(code))
    assert.match(refused.message, new RegExp(`AADSTS${code}: `))
    assert.match(refused.message, advice)
    assert.deepEqual(refused.upstream?.errorCodes, [code])
    assert.equal(refused.upstream?.traceId, 'trace-1')
  }
})

test('emulated Entra: 3921996 for a tenant refusing bound tokens; 51000 for an app without mTLS client auth; 500181 for a mismatched assertion', async (t) => {
  const f = await startEntraFixture(t, { boundTokensRefused: true })
  const mi = f.state.managedIdentities[0]!
  const miCert = await issueClientCertificate(f.state, mi.clientId)
  const pop = (tokenType: 'mtls_pop' | 'Bearer') =>
    managedIdentityMtlsRequest({
      tokenEndpoint: f.mtlsTokenUrl,
      clientId: mi.clientId,
      scope: resource,
      binding: miCert,
      tokenType,
      identityName: 'mi',
    })
  const refused = asSidecarError(await rejectsWith(f.client.requestToken(pop('mtls_pop'), signal())))
  assert.equal(refused.reason, 'binding_not_allowed')
  assert.deepEqual(refused.upstream?.errorCodes, [3921996])
  assert.equal(
    (await f.client.requestToken(pop('Bearer'), signal())).tokenType,
    'Bearer',
    'bound Bearer still allowed',
  )

  const cert = await issueClientCertificate(f.state, 'app-cert')
  const other = await issueClientCertificate(f.state, 'other-cert')
  const app = registerApp(f.state, {
    certificates: [cert.certificatePem, other.certificatePem],
    mtlsClientAuth: false,
  })
  const sign = (certificate: BindingCertificate) =>
    signClientAssertion({
      clientId: app.clientId,
      tokenEndpoint: f.mtlsTokenUrl,
      certificatePem: certificate.certificatePem,
      privateKeyPem: certificate.privateKeyPem,
      sendX5C: true,
      clock: f.clock,
    })
  const boundBearer = async (signer: BindingCertificate) =>
    boundCertificateRequest({
      tokenEndpoint: f.mtlsTokenUrl,
      clientId: app.clientId,
      scope: resource,
      certificate: cert,
      tokenType: 'Bearer',
      identityName: 'app',
      assertion: await sign(signer),
    })
  const disabled = asSidecarError(await rejectsWith(f.client.requestToken(await boundBearer(cert), signal())))
  assert.equal(disabled.reason, 'entra_configuration')
  assert.equal(disabled.upstream?.status, 412)
  assert.deepEqual(disabled.upstream?.errorCodes, [51000])
  assert.match(disabled.message, /useBoundCredential: false on the certificate of identity "app"/)

  registerApp(f.state, { clientId: app.clientId, mtlsClientAuth: true })
  const mismatch = asSidecarError(
    await rejectsWith(f.client.requestToken(await boundBearer(other), signal())),
  )
  assert.equal(mismatch.reason, 'entra_configuration')
  assert.deepEqual(mismatch.upstream?.errorCodes, [500181])
  assert.equal((await f.client.requestToken(await boundBearer(cert), signal())).tokenType, 'Bearer')
})

test('an mTLS PoP token is kept no longer than its own exp, nor past its certificate', async (t) => {
  const f = await startEntraFixture(t)
  const { binding, req } = await miPopRequest(f)
  const nowS = Math.floor(f.clock.now() / 1000)
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')
  const accessToken = `${part({ alg: 'RS256' })}.${part({ exp: nowS + 600, cnf: { 'x5t#S256': binding.x5tS256 } })}.c2ln`
  f.state.faults.script('entra.mtls.token', [
    { status: 200, body: { token_type: 'mtls_pop', expires_in: '3599', access_token: accessToken } },
  ])
  const token = await f.client.requestToken(req, signal())
  assert.equal(token.expiresOn, (nowS + 600) * 1000, 'the exp, not expires_in')
  // A certificate ending before the token: the token ends with it.
  f.state.faults.script('entra.mtls.token', [
    { status: 200, body: { token_type: 'mtls_pop', expires_in: '3599', access_token: 'opaque' } },
  ])
  const shortCert = { ...binding, notAfter: f.clock.now() + 120_000 }
  const bounded = await f.client.requestToken({ ...req, clientCertificate: shortCert }, signal())
  assert.equal(bounded.expiresOn, shortCert.notAfter)
})

test('Entra answers 200 with an absurd lifetime or an error field: 502 malformed, never a token', async (t) => {
  const f = await startEntraFixture(t)
  const { req } = await miPopRequest(f)
  const bodies = [
    { token_type: 'mtls_pop', expires_in: 1e12, access_token: 'opaque' },
    { token_type: 'mtls_pop', expires_in: '0', access_token: 'opaque' },
    { token_type: 'mtls_pop', expires_in: 'never', access_token: 'opaque' },
    { token_type: 'mtls_pop', expires_in: String(49 * 3600), access_token: 'opaque' },
    { token_type: 'mtls_pop', expires_in: '3599', access_token: 'opaque', error: 'invalid_client' },
  ]
  f.state.faults.script(
    'entra.mtls.token',
    bodies.map((body) => ({ status: 200, body })),
  )
  for (const body of bodies) {
    await assert.rejects(f.client.requestToken(req, signal()), (error: unknown) => {
      assert.ok(isSidecarError(error), String(error))
      assert.equal(error.status, 502, JSON.stringify(body))
      assert.equal(error.reason, 'malformed_response')
      return true
    })
  }
})
