import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { writeFile } from 'node:fs/promises'
import { decodeJwt } from 'jose'
import type { SeenTokenRequest } from '../../sidecar/src/emulator/entra.ts'
import { issueAppCertificate } from '../confidential-client/stack.ts'
import { json, startStack } from '../support/stack.ts'

/** AADSTS3921996: the tenant is not allowed bound tokens (emulator: every mtls_pop request refused). */
const refused = { settings: { boundTokensRefused: true } }
const popMi = 'identities:\n  mi:\n    managedIdentity: {}\n    protocolScheme: MTLS_POP\n'

async function fallbackCount(url: string): Promise<string | undefined> {
  const metrics = await (await fetch(`${url}/metrics`)).text()
  return /credential_sidecar_bearer_fallback_total\{identity="(\w+)"\} (\d+)/
    .exec(metrics)
    ?.slice(1)
    .join('=')
}

test('managed identity, binding refused (3921996), no allowBearerFallback: 502 naming the code and the flag', async (t) => {
  const stack = await startStack(t, { configYaml: () => popMi, emulator: refused })
  const res = await stack.get(`/token?resource=${stack.emulator.resourceAudience}`)
  assert.equal(res.status, 502)
  const body = await json(res)
  assert.equal(body.error, 'upstream_error')
  assert.deepEqual(body.error_codes, [3921996])
  assert.match(body.error_description, /AADSTS3921996/)
  assert.match(body.error_description, /set allowBearerFallback: true on identity "mi"/)
  assert.equal(body.access_token, undefined)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0, 'no silent Bearer')
  assert.equal(
    stack.emulator.state.calls.count('imds.issuecredential'),
    1,
    'not treated as a bad certificate',
  )
})

test('managed identity, binding refused, allowBearerFallback: a genuine IMDS v1 Bearer token, logged and counted', async (t) => {
  const stack = await startStack(t, {
    configYaml: () => `${popMi}    allowBearerFallback: true\n`,
    emulator: refused,
  })
  const res = await stack.get(`/token?resource=${stack.emulator.resourceAudience}`)
  const body = await json(res)
  assert.equal(res.status, 200, JSON.stringify(body))
  assert.equal(body.token_type, 'Bearer')
  assert.equal(body.binding_certificate, undefined)
  assert.equal(decodeJwt(body.access_token)['cnf'], undefined)
  const { calls } = stack.emulator.state
  assert.equal(calls.count('entra.mtls.token'), 1)
  assert.equal(calls.count('imds.token'), 1, 'from IMDS v1')
  assert.equal(await fallbackCount(stack.url), 'mi=1')
  const logged = stack.logs.records.find((r) => r['event'] === 'bearer_fallback')
  assert.ok(logged)
  assert.equal(logged['via'], 'imds_v1')
  assert.deepEqual(logged['aadsts'], [3921996])
  // Cached like any token: the next caller gets it without a new round trip.
  const again = await json(await stack.get(`/token?resource=${stack.emulator.resourceAudience}`))
  assert.equal(again.access_token, body.access_token)
  assert.equal(calls.count('imds.token'), 1)
})

async function popCertStack(t: Parameters<typeof startStack>[0], fallback: boolean) {
  const seen: SeenTokenRequest[] = []
  const stack = await startStack(t, {
    emulator: {
      settings: { boundTokensRefused: true },
      entra: { onTokenRequest: (request) => seen.push(request) },
    },
    register: async ({ emulator, dir }) => {
      const cert = await issueAppCertificate(emulator)
      await writeFile(join(dir, 'app.pem'), cert.certificatePem + cert.privateKeyPem)
      return { certificates: [cert.certificatePem] }
    },
    app: ({ dir }) =>
      [
        '    protocolScheme: MTLS_POP',
        ...(fallback ? ['    allowBearerFallback: true'] : []),
        '    clientCredentials:',
        '      - sourceType: Path',
        `        certificateDiskPath: ${join(dir, 'app.pem')}`,
      ].join('\n'),
  })
  return { stack, seen }
}

test('certificate, binding refused, no allowBearerFallback: 502 naming the code and what to enable', async (t) => {
  const { stack } = await popCertStack(t, false)
  const { status, body } = await stack.token(stack.emulator.resourceAudience)
  assert.equal(status, 502)
  assert.deepEqual(body.error_codes, [3921996])
  assert.match(body.error_description, /AADSTS3921996: the tenant is not allowed bound \(mTLS PoP\) tokens/)
  assert.match(body.error_description, /allowBearerFallback: true on identity "app"/)
  assert.equal(stack.emulator.state.calls.count('entra.mtls.token'), 1, 'no re-try with the same certificate')
})

test('certificate, binding refused, allowBearerFallback: Bearer with a private_key_jwt, logged and counted', async (t) => {
  const { stack, seen } = await popCertStack(t, true)
  const { status, body } = await stack.token(stack.emulator.resourceAudience)
  assert.equal(status, 200, JSON.stringify(body))
  assert.equal(body.token_type, 'Bearer')
  assert.equal(body.binding_certificate, undefined)
  assert.equal(seen.length, 2)
  assert.equal(seen[0]?.form.get('token_type'), 'mtls_pop')
  const fallback = seen[1]
  assert.ok(fallback)
  assert.equal(fallback.form.get('token_type'), null)
  assert.equal(
    fallback.form.get('client_assertion_type'),
    'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
  )
  assert.equal(fallback.clientCertificate, undefined, 'not over mTLS: a plain private_key_jwt request')
  assert.equal(await fallbackCount(stack.url), 'app=1')
  const logged = stack.logs.records.find((r) => r['event'] === 'bearer_fallback')
  assert.equal(logged?.['via'], 'private_key_jwt')
})
