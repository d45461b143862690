import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { SidecarClient } from '../../client-sdk/src/index.ts'
import { startStack } from '../support/stack.ts'
import { demoResourcePipeline } from './support.ts'

/** The SDK's side of continuous access evaluation (contract §4: getToken(scope, { claims })). */

const scope = 'https://management.azure.com/.default'
const demoScope = 'api://credential-sidecar-demo/.default'
const claims = JSON.stringify({ access_token: { nbf: { essential: true, value: '1763720000' } } })
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')

test('getToken(scope, { claims }) skips the SDK cache, names the refused token, and caches the new one', async (t) => {
  const stack = await startStack(t)
  const sidecar = new SidecarClient({ endpoint: stack.url, env: {} })
  t.after(() => sidecar.close())
  const first = await sidecar.getToken(scope)
  assert.equal((await sidecar.getToken(scope)).token, first.token, 'served from the SDK cache')
  const refreshed = await sidecar.getToken(scope, { claims })
  assert.notEqual(refreshed.token, first.token)
  // The sidecar matched the hash the SDK sent and asked IMDS again with it.
  assert.deepEqual(stack.emulator.state.calls.caeParameters('imds.token'), [
    {},
    { token_sha256_to_refresh: sha256(first.token) },
  ])
  assert.equal((await sidecar.getToken(scope)).token, refreshed.token, 'the new token is cached')
  assert.equal(stack.emulator.state.calls.count('imds.token'), 2)
})

test('tokenCredential() in a real Azure pipeline answers a CAE challenge (401 insufficient_claims) with a new token', async (t) => {
  const stack = await startStack(t)
  const sidecar = new SidecarClient({ endpoint: stack.url, env: {} })
  t.after(() => sidecar.close())
  const { sent, call } = demoResourcePipeline(t, stack, sidecar.tokenCredential(), demoScope)
  assert.equal((await call()).status, 200)
  // The resource revokes the token: a CAE challenge, as Entra-protected resources send it.
  stack.emulator.state.faults.script('resource', [
    {
      status: 401,
      headers: {
        'www-authenticate': `Bearer realm="", error="insufficient_claims", error_description="token revoked", claims="${Buffer.from(claims).toString('base64')}"`,
      },
    },
  ])
  const res = await call()
  assert.equal(res.status, 200, 'the pipeline retried with a token fetched for the challenge')
  assert.equal(sent.length, 3)
  assert.equal(sent[0], sent[1], 'the refused token')
  assert.notEqual(sent[2], sent[1], 'a new token after the challenge')
  assert.equal(stack.emulator.state.calls.count('imds.token'), 2)
  const refused = (sent[1] ?? '').replace(/^Bearer /, '')
  assert.deepEqual(stack.emulator.state.calls.caeParameters('imds.token')[1], {
    token_sha256_to_refresh: sha256(refused),
  })
})
