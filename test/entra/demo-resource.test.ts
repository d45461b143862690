import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { Agent, request } from 'undici'
import { demoResourceAudience, startDemoResource } from '../../sidecar/src/emulator/demo-resource.ts'
import { managedIdentityMtlsRequest } from '../../sidecar/src/upstream/entra/requests.ts'
import type { BindingCertificate } from '../../sidecar/src/model/binding.ts'
import { issueClientCertificate, startEntraFixture } from './helpers.ts'

async function setup(t: TestContext) {
  const f = await startEntraFixture(t)
  const demo = await startDemoResource(f.state)
  t.after(() => demo.close())
  const mi = f.state.managedIdentities[0]!
  const binding = await issueClientCertificate(f.state, mi.clientId)
  const tokenFor = async (tokenType: 'mtls_pop' | 'Bearer') =>
    (
      await f.client.requestToken(
        managedIdentityMtlsRequest({
          tokenEndpoint: f.mtlsTokenUrl,
          clientId: mi.clientId,
          scope: demoResourceAudience,
          binding,
          tokenType,
          identityName: 'mi',
        }),
        AbortSignal.timeout(20_000),
      )
    ).accessToken
  const call = async (
    authorization: string | undefined,
    cert?: BindingCertificate,
    tls?: { maxVersion: 'TLSv1.2' | 'TLSv1.3' },
  ) => {
    const agent = new Agent({
      connect: {
        ca: [f.state.ca.certificatePem],
        ...(cert ? { cert: cert.certificatePem, key: cert.privateKeyPem } : {}),
        ...(tls ?? {}),
      },
    })
    try {
      const res = await request(`${demo.url}/api/whoami`, {
        dispatcher: agent,
        headers: authorization ? { authorization } : {},
      })
      return {
        status: res.statusCode,
        headers: res.headers,
        body: (await res.body.json()) as Record<string, unknown>,
      }
    } finally {
      await agent.close()
    }
  }
  return { f, mi, binding, tokenFor, call }
}

test('demo resource accepts mtls_pop over TLS with the bound certificate (TLS 1.3 and 1.2)', async (t) => {
  const { f, mi, binding, tokenFor, call } = await setup(t)
  const token = await tokenFor('mtls_pop')
  for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
    const res = await call(`mtls_pop ${token}`, binding, { maxVersion })
    assert.equal(res.status, 200, maxVersion)
    assert.deepEqual(res.body, {
      ok: true,
      scheme: 'mtls_pop',
      sub: mi.objectId,
      appid: mi.clientId,
      cnf: { 'x5t#S256': binding.x5tS256 },
    })
  }
  assert.equal(f.state.calls.count('resource'), 2)
})

test('demo resource refuses mtls_pop with another certificate or without one', async (t) => {
  const { f, mi, tokenFor, call } = await setup(t)
  const token = await tokenFor('mtls_pop')
  const other = await issueClientCertificate(f.state, mi.clientId)
  const wrong = await call(`mtls_pop ${token}`, other)
  assert.equal(wrong.status, 401)
  assert.match(String(wrong.headers['www-authenticate']), /^mtls_pop error="invalid_token"/)
  const none = await call(`mtls_pop ${token}`)
  assert.equal(none.status, 401)
  assert.match(String(none.headers['www-authenticate']), /^mtls_pop error="invalid_token"/)
})

test('demo resource accepts a Bearer token without cnf and refuses a PoP token sent as Bearer', async (t) => {
  const { binding, tokenFor, call } = await setup(t)
  const bearer = await tokenFor('Bearer')
  const ok = await call(`Bearer ${bearer}`)
  assert.equal(ok.status, 200)
  assert.equal(ok.body['scheme'], 'Bearer')
  assert.equal(ok.body['cnf'], undefined)
  const pop = await tokenFor('mtls_pop')
  const refused = await call(`Bearer ${pop}`, binding)
  assert.equal(refused.status, 401)
  assert.match(String(refused.headers['www-authenticate']), /^Bearer error="invalid_token"/)
})

test('demo resource refuses missing, forged and wrong-audience tokens', async (t) => {
  const { f, call } = await setup(t)
  const none = await call(undefined)
  assert.equal(none.status, 401)
  assert.match(String(none.headers['www-authenticate']), /Bearer/)
  const forged = await call('Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.')
  assert.equal(forged.status, 401)
  const otherAudience = await f.state.tokens.mint(
    { aud: 'https://management.azure.com', iss: 'x', tid: f.state.tenantId, sub: 's' },
    600,
  )
  const wrongAud = await call(`Bearer ${otherAudience}`)
  assert.equal(wrongAud.status, 401)
})
