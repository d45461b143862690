import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  boundCertificateRequest,
  certificateAssertionRequest,
  clientSecretRequest,
  federatedAssertionRequest,
  jwtBearerAssertionType,
  jwtPopAssertionType,
  managedIdentityMtlsRequest,
  scopeForResource,
} from '../../sidecar/src/upstream/entra/requests.ts'
import type { BindingCertificate } from '../../sidecar/src/model/binding.ts'

const binding: BindingCertificate = {
  x5tS256: 'thumb',
  certificatePem: 'cert',
  privateKeyPem: 'key',
  notAfter: 0,
  keyProtection: 'software',
}
const common = {
  tokenEndpoint: 'https://mtls.example/tid/oauth2/v2.0/token',
  clientId: 'cid',
  identityName: 'id',
}

test('scope normalisation: resource → <resource>/.default, scope passed through', () => {
  assert.equal(scopeForResource('https://graph.microsoft.com'), 'https://graph.microsoft.com/.default')
  assert.equal(scopeForResource('https://graph.microsoft.com/'), 'https://graph.microsoft.com/.default')
  assert.equal(scopeForResource('https://graph.microsoft.com//'), 'https://graph.microsoft.com/.default')
  assert.equal(
    scopeForResource('https://graph.microsoft.com/.default'),
    'https://graph.microsoft.com/.default',
  )
  assert.equal(scopeForResource('api://AzureADTokenExchange'), 'api://AzureADTokenExchange/.default')
  // A scope of a resource kept with its trailing slash (IMDS v1's spelling) goes to Entra trimmed.
  assert.equal(
    scopeForResource('https://graph.microsoft.com//.default'),
    'https://graph.microsoft.com/.default',
  )
})

test('managed identity mTLS leg: no assertion; token_type=mtls_pop for PoP, none for a bound Bearer token', () => {
  const pop = managedIdentityMtlsRequest({
    ...common,
    scope: 'https://management.azure.com/',
    binding,
    tokenType: 'mtls_pop',
  })
  assert.deepEqual(pop.form, {
    grant_type: 'client_credentials',
    client_id: 'cid',
    scope: 'https://management.azure.com/.default',
    token_type: 'mtls_pop',
  })
  assert.equal(pop.clientCertificate, binding)
  assert.equal(pop.expectedTokenType, 'mtls_pop')
  assert.equal(pop.metricsEndpoint, 'entra.mtls.token')
  assert.equal(pop.allowBearerFallback, undefined)
  const bearer = managedIdentityMtlsRequest({
    ...common,
    scope: 'r',
    binding,
    tokenType: 'Bearer',
    allowBearerFallback: true,
  })
  // A bound Bearer token: the same leg with no token_type (upstream-protocol §3; MSAL's Bearer
  // scheme adds none, and token_type=bearer is in no released MSAL).
  assert.equal('token_type' in bearer.form, false)
  assert.equal(bearer.allowBearerFallback, true)
})

test('bound confidential client: client_info=2; PoP without assertion, Bearer with a jwt-bearer assertion', () => {
  const pop = boundCertificateRequest({ ...common, scope: 'r', certificate: binding, tokenType: 'mtls_pop' })
  assert.deepEqual(pop.form, {
    grant_type: 'client_credentials',
    client_id: 'cid',
    scope: 'r/.default',
    client_info: '2',
    token_type: 'mtls_pop',
  })
  assert.equal(pop.clientCertificate, binding)
  const bearer = boundCertificateRequest({
    ...common,
    scope: 'r',
    certificate: binding,
    tokenType: 'Bearer',
    assertion: 'jwt',
  })
  assert.deepEqual(bearer.form, {
    grant_type: 'client_credentials',
    client_id: 'cid',
    scope: 'r/.default',
    client_info: '2',
    client_assertion_type: jwtBearerAssertionType,
    client_assertion: 'jwt',
  })
  assert.equal(bearer.clientCertificate, binding)
  assert.throws(
    () => boundCertificateRequest({ ...common, scope: 'r', certificate: binding, tokenType: 'Bearer' }),
    /client assertion/,
  )
})

test('certificate assertion and client secret: regular endpoint, Bearer', () => {
  const assertion = certificateAssertionRequest({ ...common, scope: 'r', assertion: 'jwt' })
  assert.equal(assertion.form['client_assertion_type'], jwtBearerAssertionType)
  assert.equal(assertion.form['client_assertion'], 'jwt')
  assert.equal(assertion.clientCertificate, undefined)
  assert.equal(assertion.metricsEndpoint, 'entra.token')
  const secret = clientSecretRequest({ ...common, scope: 'r', clientSecret: 's3cret' })
  assert.equal(secret.form['client_secret'], 's3cret')
  assert.equal(secret.expectedTokenType, 'Bearer')
})

test('FIC leg 2: jwt-pop over mTLS when bound, jwt-bearer otherwise', () => {
  const bound = federatedAssertionRequest({
    ...common,
    scope: 'r',
    assertion: 'leg1',
    binding,
    tokenType: 'mtls_pop',
  })
  assert.equal(bound.form['client_assertion_type'], jwtPopAssertionType)
  assert.equal(bound.form['token_type'], 'mtls_pop')
  assert.equal(
    bound.form['client_info'],
    '2',
    'FIC leg 2 sends client_info=2 like every MSAL.NET client-credentials request',
  )
  assert.equal(bound.clientCertificate, binding)
  assert.equal(bound.metricsEndpoint, 'entra.mtls.token')
  const boundBearer = federatedAssertionRequest({
    ...common,
    scope: 'r',
    assertion: 'leg1',
    binding,
    tokenType: 'Bearer',
  })
  assert.equal(boundBearer.form['client_assertion_type'], jwtPopAssertionType)
  assert.equal(boundBearer.form['token_type'], undefined)
  const unbound = federatedAssertionRequest({ ...common, scope: 'r', assertion: 'leg1', tokenType: 'Bearer' })
  assert.equal(unbound.form['client_assertion_type'], jwtBearerAssertionType)
  assert.equal(unbound.form['client_info'], '2')
  assert.equal(unbound.clientCertificate, undefined)
  assert.throws(
    () => federatedAssertionRequest({ ...common, scope: 'r', assertion: 'leg1', tokenType: 'mtls_pop' }),
    /binding certificate/,
  )
})
