import { test } from 'node:test'
import assert from 'node:assert/strict'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import {
  registerApp,
  registerWorkloadIssuer,
  tokenExchangeAudience,
} from '../../sidecar/src/emulator/entra.ts'
import { isSidecarError, type SidecarError } from '../../sidecar/src/core/errors.ts'
import { CertificateAuthority } from '../../sidecar/src/emulator/pki/certificate-authority.ts'
import { signClientAssertion } from '../../sidecar/src/upstream/entra/client-assertion.ts'
import {
  certificateAssertionRequest,
  clientSecretRequest,
  federatedAssertionRequest,
  managedIdentityMtlsRequest,
} from '../../sidecar/src/upstream/entra/requests.ts'
import {
  issueClientCertificate,
  rejectsWith,
  startEntraFixture,
  toBinding,
  type EntraFixture,
} from './helpers.ts'

const resource = 'https://graph.microsoft.com'
const signal = () => AbortSignal.timeout(20_000)

function asSidecarError(error: unknown): SidecarError {
  assert.ok(isSidecarError(error), `expected a SidecarError, got ${String(error)}`)
  return error
}

/** FIC leg 1: the managed identity's bound token for api://AzureADTokenExchange over IMDS v2-style mTLS. */
async function leg1(f: EntraFixture, tokenType: 'mtls_pop' | 'Bearer' = 'mtls_pop') {
  const mi = f.state.managedIdentities[0]!
  const binding = await issueClientCertificate(f.state, mi.clientId)
  const token = await f.client.requestToken(
    managedIdentityMtlsRequest({
      tokenEndpoint: f.mtlsTokenUrl,
      clientId: mi.clientId,
      scope: tokenExchangeAudience,
      binding,
      tokenType,
      identityName: 'mi',
    }),
    signal(),
  )
  return { mi, binding, assertion: token.accessToken }
}

test('private_key_jwt: PS256 with x5t#S256, claims from the clock; the emulator verifies it', async (t) => {
  const f = await startEntraFixture(t)
  const cert = await issueClientCertificate(f.state, 'app')
  const app = registerApp(f.state, { certificates: [cert.certificatePem] })
  const assertion = await signClientAssertion({
    clientId: app.clientId,
    tokenEndpoint: f.tokenUrl,
    certificatePem: cert.certificatePem,
    privateKeyPem: cert.privateKeyPem,
    sendX5C: false,
    clock: f.clock,
  })
  const header = decodeProtectedHeader(assertion)
  assert.equal(header.alg, 'PS256')
  assert.equal(header['x5t#S256'], cert.x5tS256)
  assert.equal(header.x5c, undefined)
  const claims = decodeJwt(assertion)
  assert.equal(claims.aud, f.tokenUrl)
  assert.equal(claims.iss, app.clientId)
  assert.equal(claims.sub, app.clientId)
  assert.match(String(claims.jti), /^[0-9a-f-]{36}$/)
  assert.equal((claims.exp ?? 0) - (claims.nbf ?? 0), 600)

  const token = await f.client.requestToken(
    certificateAssertionRequest({
      tokenEndpoint: f.tokenUrl,
      clientId: app.clientId,
      scope: resource,
      assertion,
      identityName: 'app',
    }),
    signal(),
  )
  assert.equal(token.tokenType, 'Bearer')
  assert.equal(token.binding, undefined)
  // The regular endpoint answers expires_in as a number.
  assert.ok(Math.abs(token.expiresOn - (f.clock.now() + 3599_000)) < 5000)
  const at = await f.state.tokens.verify(token.accessToken, { audience: resource })
  assert.equal(at['appid'], app.clientId)
  assert.equal(at['cnf'], undefined)
})

test('private_key_jwt with x5c (subject name + issuer): chain sent, verified without registering the thumbprint', async (t) => {
  const f = await startEntraFixture(t)
  const app = registerApp(f.state)
  const cert = await issueClientCertificate(f.state, app.clientId)
  const chainPem = cert.certificatePem + f.state.ca.certificatePem
  const assertion = await signClientAssertion({
    clientId: app.clientId,
    tokenEndpoint: f.tokenUrl,
    certificatePem: chainPem,
    privateKeyPem: cert.privateKeyPem,
    sendX5C: true,
    clock: f.clock,
  })
  const header = decodeProtectedHeader(assertion)
  assert.ok(Array.isArray(header.x5c) && header.x5c.length === 2)
  assert.equal(header['x5t#S256'], cert.x5tS256)
  const token = await f.client.requestToken(
    certificateAssertionRequest({
      tokenEndpoint: f.tokenUrl,
      clientId: app.clientId,
      scope: resource,
      assertion,
      identityName: 'app',
    }),
    signal(),
  )
  assert.equal(token.tokenType, 'Bearer')

  // Without x5c the unregistered certificate is unknown to the app.
  const bare = await signClientAssertion({
    clientId: app.clientId,
    tokenEndpoint: f.tokenUrl,
    certificatePem: cert.certificatePem,
    privateKeyPem: cert.privateKeyPem,
    sendX5C: false,
    clock: f.clock,
  })
  const error = asSidecarError(
    await rejectsWith(
      f.client.requestToken(
        certificateAssertionRequest({
          tokenEndpoint: f.tokenUrl,
          clientId: app.clientId,
          scope: resource,
          assertion: bare,
          identityName: 'app',
        }),
        signal(),
      ),
    ),
  )
  assert.equal(error.reason, 'invalid_client')
  assert.deepEqual(error.upstream?.errorCodes, [700027])
  assert.ok(!error.message.includes(bare))
})

test('private_key_jwt refusals: wrong key, wrong audience, expired', async (t) => {
  const f = await startEntraFixture(t)
  const cert = await issueClientCertificate(f.state, 'app')
  const app = registerApp(f.state, { certificates: [cert.certificatePem] })
  const other = await issueClientCertificate(f.state, 'app')
  const send = async (assertion: string) =>
    asSidecarError(
      await rejectsWith(
        f.client.requestToken(
          certificateAssertionRequest({
            tokenEndpoint: f.tokenUrl,
            clientId: app.clientId,
            scope: resource,
            assertion,
            identityName: 'app',
          }),
          signal(),
        ),
      ),
    )

  // Header names the registered certificate, signature made with another key.
  const forged = await signClientAssertion({
    clientId: app.clientId,
    tokenEndpoint: f.tokenUrl,
    certificatePem: cert.certificatePem,
    privateKeyPem: other.privateKeyPem,
    sendX5C: false,
    clock: f.clock,
  })
  assert.deepEqual((await send(forged)).upstream?.errorCodes, [700027])

  const wrongAud = await signClientAssertion({
    clientId: app.clientId,
    tokenEndpoint: 'https://elsewhere.example/token',
    certificatePem: cert.certificatePem,
    privateKeyPem: cert.privateKeyPem,
    sendX5C: false,
    clock: f.clock,
  })
  assert.deepEqual((await send(wrongAud)).upstream?.errorCodes, [700212])

  const past = {
    now: () => Date.now() - 3600_000,
    sleep: async () => {},
    setTimer: f.clock.setTimer.bind(f.clock),
  }
  const expired = await signClientAssertion({
    clientId: app.clientId,
    tokenEndpoint: f.tokenUrl,
    certificatePem: cert.certificatePem,
    privateKeyPem: cert.privateKeyPem,
    sendX5C: false,
    clock: past,
  })
  const error = await send(expired)
  assert.equal(error.reason, 'invalid_client')
  assert.deepEqual(error.upstream?.errorCodes, [700024])
})

test('client secret: right secret → Bearer; wrong secret → invalid_client AADSTS7000215, secret never in the error', async (t) => {
  const f = await startEntraFixture(t)
  const app = registerApp(f.state, { clientSecrets: ['correct-horse'] })
  const ok = await f.client.requestToken(
    clientSecretRequest({
      tokenEndpoint: f.tokenUrl,
      clientId: app.clientId,
      scope: resource,
      clientSecret: 'correct-horse',
      identityName: 'app',
    }),
    signal(),
  )
  assert.equal(ok.tokenType, 'Bearer')
  const error = asSidecarError(
    await rejectsWith(
      f.client.requestToken(
        clientSecretRequest({
          tokenEndpoint: f.tokenUrl,
          clientId: app.clientId,
          scope: resource,
          clientSecret: 'battery-staple',
          identityName: 'app',
        }),
        signal(),
      ),
    ),
  )
  assert.equal(error.code, 'upstream_error')
  assert.equal(error.reason, 'invalid_client')
  assert.deepEqual(error.upstream?.errorCodes, [7000215])
  assert.ok(!JSON.stringify({ m: error.message, u: error.upstream }).includes('battery-staple'))
})

test('an unknown app is unauthorized_client (reason invalid_client); mtls_pop on the regular host is refused', async (t) => {
  const f = await startEntraFixture(t)
  const unknown = asSidecarError(
    await rejectsWith(
      f.client.requestToken(
        clientSecretRequest({
          tokenEndpoint: f.tokenUrl,
          clientId: 'nobody',
          scope: resource,
          clientSecret: 's',
          identityName: 'app',
        }),
        signal(),
      ),
    ),
  )
  assert.equal(unknown.reason, 'invalid_client')
  assert.equal(unknown.upstream?.error, 'unauthorized_client')
  assert.deepEqual(unknown.upstream?.errorCodes, [700016])

  const app = registerApp(f.state, { clientSecrets: ['s'] })
  const req = clientSecretRequest({
    tokenEndpoint: f.tokenUrl,
    clientId: app.clientId,
    scope: resource,
    clientSecret: 's',
    identityName: 'app',
  })
  req.form['token_type'] = 'mtls_pop'
  req.expectedTokenType = 'mtls_pop'
  const refused = asSidecarError(await rejectsWith(f.client.requestToken(req, signal())))
  assert.equal(refused.code, 'upstream_bad_request')
  assert.match(refused.message, /mTLS endpoint/)
})

test('FIC leg 2 over mTLS with jwt-pop: cnf matches the presented certificate → mtls_pop bound to the leg-1 certificate', async (t) => {
  const f = await startEntraFixture(t)
  const { mi, binding, assertion } = await leg1(f)
  const app = registerApp(f.state, { federatedSubjects: [mi.objectId] })
  const req = federatedAssertionRequest({
    tokenEndpoint: f.mtlsTokenUrl,
    clientId: app.clientId,
    scope: resource,
    assertion,
    binding,
    tokenType: 'mtls_pop',
    identityName: 'app',
  })
  const token = await f.client.requestToken(req, signal())
  assert.equal(token.tokenType, 'mtls_pop')
  assert.equal(token.binding, binding)
  const claims = await f.state.tokens.verify(token.accessToken, { audience: resource })
  assert.deepEqual(claims['cnf'], { 'x5t#S256': binding.x5tS256 })
  assert.equal(claims['appid'], app.clientId)

  const bearer = await f.client.requestToken(
    federatedAssertionRequest({
      tokenEndpoint: f.mtlsTokenUrl,
      clientId: app.clientId,
      scope: resource,
      assertion,
      binding,
      tokenType: 'Bearer',
      identityName: 'app',
    }),
    signal(),
  )
  assert.equal(bearer.tokenType, 'Bearer')
})

test('FIC leg 2 with jwt-pop and a different certificate is refused; a bound assertion sent as jwt-bearer is refused', async (t) => {
  const f = await startEntraFixture(t)
  const { mi, assertion } = await leg1(f)
  const app = registerApp(f.state, { federatedSubjects: [mi.objectId] })
  const otherCert = await issueClientCertificate(f.state, mi.clientId)
  const mismatch = asSidecarError(
    await rejectsWith(
      f.client.requestToken(
        federatedAssertionRequest({
          tokenEndpoint: f.mtlsTokenUrl,
          clientId: app.clientId,
          scope: resource,
          assertion,
          binding: otherCert,
          tokenType: 'mtls_pop',
          identityName: 'app',
        }),
        signal(),
      ),
    ),
  )
  assert.equal(mismatch.reason, 'invalid_client')
  assert.match(mismatch.message, /different certificate/)

  const asBearer = asSidecarError(
    await rejectsWith(
      f.client.requestToken(
        federatedAssertionRequest({
          tokenEndpoint: f.tokenUrl,
          clientId: app.clientId,
          scope: resource,
          assertion,
          tokenType: 'Bearer',
          identityName: 'app',
        }),
        signal(),
      ),
    ),
  )
  assert.equal(asBearer.reason, 'invalid_client')
})

test('FIC leg 2 unbound (jwt-bearer, regular host); no matching federated record → AADSTS70021 as invalid_client', async (t) => {
  const f = await startEntraFixture(t)
  const { mi, assertion } = await leg1(f, 'Bearer')
  const trusted = registerApp(f.state, { federatedSubjects: [mi.objectId] })
  const token = await f.client.requestToken(
    federatedAssertionRequest({
      tokenEndpoint: f.tokenUrl,
      clientId: trusted.clientId,
      scope: resource,
      assertion,
      tokenType: 'Bearer',
      identityName: 'app',
    }),
    signal(),
  )
  assert.equal(token.tokenType, 'Bearer')

  const untrusting = registerApp(f.state)
  const error = asSidecarError(
    await rejectsWith(
      f.client.requestToken(
        federatedAssertionRequest({
          tokenEndpoint: f.tokenUrl,
          clientId: untrusting.clientId,
          scope: resource,
          assertion,
          tokenType: 'Bearer',
          identityName: 'app',
        }),
        signal(),
      ),
    ),
  )
  assert.equal(error.code, 'upstream_error')
  assert.equal(error.reason, 'invalid_client')
  assert.equal(error.upstream?.error, 'invalid_request')
  assert.deepEqual(error.upstream?.errorCodes, [70021])
})

test('workload identity: a token from a registered issuer is accepted for the federated issuer/subject pair only', async (t) => {
  const f = await startEntraFixture(t)
  const issuer = await registerWorkloadIssuer(f.state, 'https://oidc.aks.example/cluster-1/')
  const subject = 'system:serviceaccount:default:app'
  const app = registerApp(f.state, { federatedIssuers: [{ issuer: issuer.issuer, subject }] })
  const good = await issuer.sign({ subject })
  const token = await f.client.requestToken(
    federatedAssertionRequest({
      tokenEndpoint: f.tokenUrl,
      clientId: app.clientId,
      scope: resource,
      assertion: good,
      tokenType: 'Bearer',
      identityName: 'wi',
    }),
    signal(),
  )
  assert.equal(token.tokenType, 'Bearer')

  const wrongSubject = await issuer.sign({ subject: 'system:serviceaccount:default:other' })
  const error = asSidecarError(
    await rejectsWith(
      f.client.requestToken(
        federatedAssertionRequest({
          tokenEndpoint: f.tokenUrl,
          clientId: app.clientId,
          scope: resource,
          assertion: wrongSubject,
          tokenType: 'Bearer',
          identityName: 'wi',
        }),
        signal(),
      ),
    ),
  )
  assert.deepEqual(error.upstream?.errorCodes, [70021])

  const expired = await issuer.sign({ subject, lifetimeSec: -60 })
  const stale = asSidecarError(
    await rejectsWith(
      f.client.requestToken(
        federatedAssertionRequest({
          tokenEndpoint: f.tokenUrl,
          clientId: app.clientId,
          scope: resource,
          assertion: expired,
          tokenType: 'Bearer',
          identityName: 'wi',
        }),
        signal(),
      ),
    ),
  )
  assert.deepEqual(stale.upstream?.errorCodes, [700024])
})

test('a certificate from a foreign CA cannot do SNI with x5c', async (t) => {
  const f = await startEntraFixture(t)
  const app = registerApp(f.state)
  const foreignCa = await CertificateAuthority.create()
  const cert = toBinding(
    await foreignCa.issueWithNewKey({
      subject: [{ shortName: 'CN', value: app.clientId }],
      usage: 'client',
      validityMs: 3600_000,
    }),
  )
  const assertion = await signClientAssertion({
    clientId: app.clientId,
    tokenEndpoint: f.tokenUrl,
    certificatePem: cert.certificatePem,
    privateKeyPem: cert.privateKeyPem,
    sendX5C: true,
    clock: f.clock,
  })
  const error = asSidecarError(
    await rejectsWith(
      f.client.requestToken(
        certificateAssertionRequest({
          tokenEndpoint: f.tokenUrl,
          clientId: app.clientId,
          scope: resource,
          assertion,
          identityName: 'app',
        }),
        signal(),
      ),
    ),
  )
  assert.equal(error.reason, 'invalid_client')
})

test('discovery documents on the regular host', async (t) => {
  const f = await startEntraFixture(t)
  const { request } = await import('undici')
  const { Agent } = await import('undici')
  const agent = new Agent({ connect: { ca: [f.state.ca.certificatePem] } })
  t.after(() => agent.close())
  const config = (await (
    await request(`${f.entra.url}/${f.state.tenantId}/v2.0/.well-known/openid-configuration`, {
      dispatcher: agent,
    })
  ).body.json()) as Record<string, unknown>
  assert.equal(config['token_endpoint'], f.tokenUrl)
  assert.deepEqual(config['mtls_endpoint_aliases'], { token_endpoint: f.mtlsTokenUrl })
  const jwks = (await (
    await request(`${f.entra.url}/discovery/v2.0/keys`, { dispatcher: agent })
  ).body.json()) as { keys: unknown[] }
  assert.equal(jwks.keys.length, 1)
})
