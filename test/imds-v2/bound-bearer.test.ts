import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { SeenTokenRequest } from '../../sidecar/src/emulator/entra.ts'
import { json, startStack } from '../support/stack.ts'

test('managed identity useBoundCredential with Bearer: the Entra mTLS leg sends no token_type and gets a Bearer token', async (t) => {
  const seen: SeenTokenRequest[] = []
  const stack = await startStack(t, {
    emulator: { entra: { onTokenRequest: (request) => seen.push(request) } },
    configYaml: () => 'identities:\n  mi:\n    managedIdentity: {}\n    useBoundCredential: true\n',
  })
  const res = await stack.get(`/token?resource=${stack.emulator.resourceAudience}`)
  const body = await json(res)
  assert.equal(res.status, 200, JSON.stringify(body))
  assert.equal(body.token_type, 'Bearer')
  assert.equal(
    stack.emulator.state.calls.count('imds.issuecredential'),
    1,
    'obtained with the IMDS v2 binding',
  )
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0, 'not an IMDS v1 token')
  assert.equal(seen.length, 1)
  const leg = seen[0]!
  assert.equal(leg.host, 'mtls')
  assert.equal(leg.form.get('token_type'), null, `form: ${[...leg.form.keys()].join(',')}`)
  assert.equal(leg.form.get('grant_type'), 'client_credentials')
  assert.ok(leg.clientCertificate, 'the binding certificate was presented')
})
