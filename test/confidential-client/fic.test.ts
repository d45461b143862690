import { test } from 'node:test'
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { decodeJwt } from 'jose'
import { x5tS256 } from '../../sidecar/src/pki/x509.ts'
import { startStack } from '../support/stack.ts'
import { callDemoResource, secretsInLogs } from './stack.ts'

const graph = 'https://graph.microsoft.com'
const vault = 'https://vault.azure.net'

function fic(options: { bound: boolean; scheme?: 'MTLS_POP'; managedIdentityClientId?: string }): string {
  return [
    ...(options.scheme ? [`    protocolScheme: ${options.scheme}`] : []),
    '    clientCredentials:',
    '      - sourceType: SignedAssertionFromManagedIdentity',
    ...(options.managedIdentityClientId
      ? [`        managedIdentityClientId: ${options.managedIdentityClientId}`]
      : []),
    `        useBoundCredential: ${options.bound}`,
  ].join('\n')
}

function commonName(certificatePem: string): string | undefined {
  return /(?:^|\n)CN=([^\n]*)/.exec(new X509Certificate(certificatePem).subject)?.[1]
}

test('FIC bound → Bearer: leg 1 is an IMDS v2 mtls_pop token, leg 2 jwt-pop over mTLS; leg 1 is reused across resources', async (t) => {
  const stack = await startStack(t, {
    register: ({ emulator }) => ({ federatedSubjects: [emulator.state.managedIdentities[0]!.objectId] }),
    app: () => fic({ bound: true }),
  })
  const calls = stack.emulator.state.calls
  const { status, body } = await stack.token(graph)
  assert.equal(status, 200, JSON.stringify(body))
  assert.equal(body.token_type, 'Bearer')
  assert.equal(body.binding_certificate, undefined)
  const claims = decodeJwt(body.access_token)
  assert.equal(claims['appid'], stack.clientId)
  assert.equal(claims['cnf'], undefined)
  assert.equal(calls.count('imds.issuecredential'), 1)
  assert.equal(calls.count('imds.token'), 0)
  assert.equal(calls.count('entra.token'), 0)
  assert.equal(calls.count('entra.mtls.token'), 2) // leg 1 + leg 2

  const second = await stack.token(vault)
  assert.equal(second.status, 200)
  assert.equal(calls.count('entra.mtls.token'), 3) // leg 2 only: leg 1 cached
  assert.equal(calls.count('imds.issuecredential'), 1)
})

test('FIC bound → mtls_pop: bound to the leg-1 (IMDS v2) certificate; the resource accepts it; /credential returns the bundle', async (t) => {
  const stack = await startStack(t, {
    register: ({ emulator }) => ({ federatedSubjects: [emulator.state.managedIdentities[0]!.objectId] }),
    app: () => fic({ bound: true, scheme: 'MTLS_POP' }),
  })
  const mi = stack.emulator.state.managedIdentities[0]!
  const { status, body } = await stack.token(stack.emulator.resourceAudience)
  assert.equal(status, 200, JSON.stringify(body))
  assert.equal(body.token_type, 'mtls_pop')
  const cert = body.binding_certificate
  assert.equal(commonName(cert.certificate), mi.clientId) // the managed identity's binding certificate
  assert.equal(x5tS256(cert.certificate), cert['x5t#S256'])
  const claims = decodeJwt(body.access_token)
  assert.deepEqual(claims['cnf'], { 'x5t#S256': cert['x5t#S256'] })
  assert.equal(claims['appid'], stack.clientId)
  const ok = await callDemoResource(stack.emulator, `mtls_pop ${body.access_token}`, cert)
  assert.equal(ok.status, 200, JSON.stringify(ok.body))
  assert.equal(ok.body['appid'], stack.clientId)

  const bundle = await stack.credential()
  assert.equal(bundle.status, 200, JSON.stringify(bundle.body))
  assert.equal(bundle.body.client_id, stack.clientId)
  assert.equal(bundle.body.tenant_id, stack.tenantId)
  assert.equal(bundle.body.token_endpoint, `${stack.emulator.entraUrl}/${stack.tenantId}/oauth2/v2.0/token`)
  assert.equal(bundle.body.binding_certificate['x5t#S256'], cert['x5t#S256'])
  const assertion = decodeJwt(bundle.body.assertion)
  assert.equal(assertion.aud, 'api://AzureADTokenExchange')
  assert.equal(assertion.sub, mi.objectId)
  assert.deepEqual(assertion['cnf'], { 'x5t#S256': cert['x5t#S256'] })
  // expires_in is relative: the daemon counts it from when the answer arrived, a moment after Entra
  // signed the assertion, so the two may straddle a second boundary.
  const drift = bundle.body.assertion_expires_on - (assertion.exp ?? Number.NaN)
  assert.ok(
    drift >= 0 && drift <= 1,
    `assertion_expires_on ${bundle.body.assertion_expires_on}, exp ${assertion.exp}`,
  )
  assert.deepEqual(
    secretsInLogs(stack.logs, [body.access_token, bundle.body.assertion, cert.private_key.split('\n')[1]]),
    [],
  )
})

test('FIC unbound → Bearer: leg 1 from IMDS v1, leg 2 jwt-bearer to the regular endpoint; /credential is 409', async (t) => {
  const stack = await startStack(t, {
    register: ({ emulator }) => ({ federatedSubjects: [emulator.state.managedIdentities[0]!.objectId] }),
    app: () => fic({ bound: false }),
  })
  const calls = stack.emulator.state.calls
  const { status, body } = await stack.token(graph)
  assert.equal(status, 200, JSON.stringify(body))
  assert.equal(body.token_type, 'Bearer')
  assert.equal(decodeJwt(body.access_token)['appid'], stack.clientId)
  assert.equal(calls.count('imds.token'), 1)
  assert.equal(calls.count('entra.token'), 1)
  assert.equal(calls.count('entra.mtls.token'), 0)
  assert.equal(calls.count('imds.issuecredential'), 0)
  assert.equal((await stack.token(vault)).status, 200)
  assert.equal(calls.count('imds.token'), 1)

  const bundle = await stack.credential()
  assert.equal(bundle.status, 409)
  assert.equal(bundle.body.error, 'no_bound_credential')
})

test('FIC with MTLS_POP and useBoundCredential: false still gets a bound leg 1 (a PoP token needs its certificate)', async (t) => {
  const stack = await startStack(t, {
    register: ({ emulator }) => ({ federatedSubjects: [emulator.state.managedIdentities[0]!.objectId] }),
    app: () => fic({ bound: false, scheme: 'MTLS_POP' }),
  })
  const { status, body } = await stack.token(graph)
  assert.equal(status, 200, JSON.stringify(body))
  assert.equal(body.token_type, 'mtls_pop')
  assert.equal(stack.emulator.state.calls.count('imds.issuecredential'), 1)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0)
})

for (const bound of [true, false]) {
  test(`FIC leg 1 from a user-assigned managed identity (managedIdentityClientId), ${bound ? 'bound' : 'unbound'}`, async (t) => {
    const stack = await startStack(t, {
      register: ({ emulator }) => ({ federatedSubjects: [emulator.state.managedIdentities[1]!.objectId] }),
      app: ({ emulator }) =>
        fic({
          bound,
          managedIdentityClientId: emulator.state.managedIdentities[1]!.clientId,
          ...(bound ? { scheme: 'MTLS_POP' as const } : {}),
        }),
    })
    const uami = stack.emulator.state.managedIdentities[1]!
    const { status, body } = await stack.token(graph)
    assert.equal(status, 200, JSON.stringify(body))
    assert.equal(decodeJwt(body.access_token)['appid'], stack.clientId)
    if (bound) assert.equal(commonName(body.binding_certificate.certificate), uami.clientId)
  })
}

for (const bound of [true, false]) {
  test(`FIC without a federated record on the app → 502 with AADSTS70021 passed through (${bound ? 'bound' : 'unbound'})`, async (t) => {
    const stack = await startStack(t, { app: () => fic({ bound }) })
    const { status, body } = await stack.token(graph)
    assert.equal(status, 502, JSON.stringify(body))
    assert.equal(body.error, 'upstream_error')
    assert.deepEqual(body.error_codes, [70021])
    assert.match(body.error_description, /No matching federated identity record/)
    if (bound) {
      // A refused bound credential is dropped and re-minted once before the answer stands.
      assert.equal(stack.emulator.state.calls.count('imds.issuecredential'), 2)
    }
  })
}

test('leg 2 refusing the binding (invalid_client) drops the leg-1 bundle and the IMDS v2 certificate; the retry mints fresh', async (t) => {
  const stack = await startStack(t, {
    register: ({ emulator }) => ({ federatedSubjects: [emulator.state.managedIdentities[0]!.objectId] }),
    app: () => fic({ bound: true, scheme: 'MTLS_POP' }),
  })
  const calls = stack.emulator.state.calls
  const first = await stack.token(graph)
  assert.equal(first.status, 200, JSON.stringify(first.body))
  stack.emulator.state.faults.script('entra.mtls.token', [
    {
      status: 401,
      body: {
        error: 'invalid_client',
        error_description: 'AADSTS700027: certificate revoked',
        error_codes: [700027],
      },
    },
  ])
  const second = await stack.token(vault)
  assert.equal(second.status, 200, JSON.stringify(second.body))
  assert.notEqual(second.body.binding_certificate['x5t#S256'], first.body.binding_certificate['x5t#S256'])
  assert.deepEqual(decodeJwt(second.body.access_token)['cnf'], {
    'x5t#S256': second.body.binding_certificate['x5t#S256'],
  })
  assert.equal(calls.count('imds.issuecredential'), 2)
  // leg 1 + leg 2, refused leg 2, fresh leg 1 + leg 2
  assert.equal(calls.count('entra.mtls.token'), 5)
  // The new certificate is now current for every resource: graph gets a new token too.
  const third = await stack.token(graph)
  assert.equal(third.body.binding_certificate['x5t#S256'], second.body.binding_certificate['x5t#S256'])
})

test('a bound managed identity and an app FIC on the same VM identity share one IMDS v2 certificate', async (t) => {
  const stack = await startStack(t, {
    register: ({ emulator }) => ({ federatedSubjects: [emulator.state.managedIdentities[0]!.objectId] }),
    app: () =>
      [
        fic({ bound: true, scheme: 'MTLS_POP' }),
        '  mi:',
        '    managedIdentity: {}',
        '    protocolScheme: MTLS_POP',
      ].join('\n'),
  })
  const app = await stack.token(graph)
  const mi = await stack.token(graph, 'mi')
  assert.equal(app.status, 200, JSON.stringify(app.body))
  assert.equal(mi.status, 200, JSON.stringify(mi.body))
  assert.equal(app.body.binding_certificate['x5t#S256'], mi.body.binding_certificate['x5t#S256'])
  assert.equal(stack.emulator.state.calls.count('imds.issuecredential'), 1)
})

test('FIC bound with 60-second IMDS v2 certificates: 18 requests share one certificate, one leg 1 and one leg 2', async (t) => {
  const stack = await startStack(t, {
    emulator: { settings: { bindingCertificateValidityMs: 60_000 } },
    register: ({ emulator }) => ({ federatedSubjects: [emulator.state.managedIdentities[0]!.objectId] }),
    app: () => fic({ bound: true, scheme: 'MTLS_POP' }),
  })
  const calls = stack.emulator.state.calls
  const served = new Set<string>()
  for (let i = 0; i < 18; i++) {
    const { status, body } = await stack.token(stack.emulator.resourceAudience)
    assert.equal(status, 200, JSON.stringify(body))
    served.add(body.binding_certificate['x5t#S256'])
  }
  // A leg 1 bound to a minute-long certificate is usable (a tenth of its life as margin, not 5 min).
  assert.equal(served.size, 1)
  assert.equal(calls.count('imds.issuecredential'), 1)
  assert.equal(calls.count('entra.mtls.token'), 2) // leg 1 + leg 2, then the cached token
})
