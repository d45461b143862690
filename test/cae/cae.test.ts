import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { FakeClock } from '../support/fake-clock.ts'
import { json, startStack } from '../support/stack.ts'

/** Continuous access evaluation (issue 10 item 4, contract §3): claims and token_sha256_to_refresh. */

const mgmt = 'https://management.azure.com'
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')
/** A claims challenge as Entra-protected resources send it (insufficient_claims, nbf). */
const challenge = { access_token: { nbf: { essential: true, value: '1763720000' } } }
const challengeB64 = Buffer.from(JSON.stringify(challenge)).toString('base64')

test('confidential client: capabilities on every request, claims merged with them on a forced refresh', async (t) => {
  const secret = 'cae-client-secret-value'
  const stack = await startStack(t, {
    register: () => ({ clientSecrets: [secret] }),
    env: { APP_SECRET: secret },
    app: () =>
      [
        '    clientCapabilities: [cp1]',
        '    clientCredentials:',
        '      - sourceType: ClientSecret',
        '        clientSecret: ${APP_SECRET}',
      ].join('\n'),
  })
  const first = await stack.token(mgmt)
  assert.equal(first.status, 200)
  const calls = () => stack.emulator.state.calls.caeParameters('entra.token')
  assert.deepEqual(
    calls().map((c) => JSON.parse(c['claims'] ?? 'null')),
    [{ access_token: { xms_cc: { values: ['cp1'] } } }],
    'capabilities announced on the first request already, as MSAL does',
  )
  // The resource refused the token with a claims challenge (base64 as in WWW-Authenticate).
  const refreshed = await stack.get(`/token?resource=${mgmt}&claims=${encodeURIComponent(challengeB64)}`)
  assert.equal(refreshed.status, 200)
  const body = await json(refreshed)
  assert.notEqual(body.access_token, first.body.access_token, 'a new token, not the refused one')
  assert.deepEqual(JSON.parse(calls()[1]?.['claims'] ?? 'null'), {
    access_token: { nbf: { essential: true, value: '1763720000' }, xms_cc: { values: ['cp1'] } },
  })
  // The new token replaced the cached one: plain callers get it without another upstream call.
  const after = await stack.token(mgmt)
  assert.equal(after.body.access_token, body.access_token)
  assert.equal(stack.emulator.state.calls.count('entra.token'), 2)
  // Plain-JSON claims are accepted too; a hash naming the already-replaced token is served from cache.
  const stale = await stack.get(
    `/token?resource=${mgmt}&claims=${encodeURIComponent(JSON.stringify(challenge))}&token_sha256_to_refresh=${sha256(first.body.access_token)}`,
  )
  assert.equal((await json(stale)).access_token, body.access_token)
  assert.equal(stack.emulator.state.calls.count('entra.token'), 2)
})

test('managed identity mTLS leg (IMDS v2 → Entra mTLS) carries the claims merged with capabilities', async (t) => {
  const stack = await startStack(t, {
    configYaml: () =>
      'identities:\n  mi:\n    managedIdentity: {}\n    protocolScheme: MTLS_POP\n    clientCapabilities: [cp1]\n',
  })
  const first = await json(await stack.get(`/token?resource=${mgmt}`))
  assert.equal(first.token_type, 'mtls_pop')
  const res = await stack.get(`/token?resource=${mgmt}&claims=${encodeURIComponent(challengeB64)}`)
  assert.equal(res.status, 200)
  const body = await json(res)
  assert.notEqual(body.access_token, first.access_token)
  assert.equal(body.token_type, 'mtls_pop')
  const sent = stack.emulator.state.calls
    .caeParameters('entra.mtls.token')
    .map((c) => JSON.parse(c['claims'] ?? 'null'))
  assert.deepEqual(sent, [
    { access_token: { xms_cc: { values: ['cp1'] } } },
    { access_token: { nbf: { essential: true, value: '1763720000' }, xms_cc: { values: ['cp1'] } } },
  ])
})

test('IMDS v1: a matching token_sha256_to_refresh bypasses the cache and goes upstream with the hash and xms_cc', async (t) => {
  const clock = new FakeClock(Date.now())
  const stack = await startStack(t, {
    clock,
    configYaml: () => 'identities:\n  mi:\n    managedIdentity: {}\n    clientCapabilities: [cp1]\n',
  })
  const first = await json(await stack.get(`/token?resource=${mgmt}`))
  const hash = sha256(first.access_token)
  // Not the cached token's hash: served from cache.
  const other = await json(
    await stack.get(`/token?resource=${mgmt}&token_sha256_to_refresh=${sha256('some other token')}`),
  )
  assert.equal(other.access_token, first.access_token)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 1)
  const res = await stack.get(`/token?resource=${mgmt}&token_sha256_to_refresh=${hash.toUpperCase()}`)
  assert.equal(res.status, 200)
  const refreshed = await json(res)
  assert.notEqual(refreshed.access_token, first.access_token)
  assert.deepEqual(stack.emulator.state.calls.caeParameters('imds.token'), [
    { xms_cc: 'cp1' },
    { xms_cc: 'cp1', token_sha256_to_refresh: hash },
  ])
  // The IMDS-compatible route takes the hash too (msal-node sends it to MSI v1 style endpoints),
  // once the rate-limit window of the refresh above has passed.
  await clock.advance(6_000)
  const imds = await stack.get(
    `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${mgmt}&xms_cc=cp1,cp2&token_sha256_to_refresh=${sha256(refreshed.access_token)}`,
  )
  assert.equal(imds.status, 200)
  assert.notEqual((await json(imds)).access_token, refreshed.access_token)
  assert.deepEqual(stack.emulator.state.calls.caeParameters('imds.token')[2], {
    xms_cc: 'cp1,cp2',
    token_sha256_to_refresh: sha256(refreshed.access_token),
  })
  // xms_cc alone cannot tell a claims request from a first one: served from cache.
  await stack.get(`/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${mgmt}&xms_cc=cp1`)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 3)
})

test('1000 concurrent forced refreshes of one entry make one upstream call and share its answer', async (t) => {
  const clock = new FakeClock(Date.now())
  const stack = await startStack(t, { clock })
  const first = await json(await stack.get(`/token?resource=${mgmt}`))
  const hash = sha256(first.access_token)
  const path = `/token?resource=${mgmt}&token_sha256_to_refresh=${hash}`
  const answers = await Promise.all(
    Array.from({ length: 1000 }, (_, i) =>
      stack.get(i % 2 === 0 ? path : `${path}&claims=${encodeURIComponent(challengeB64)}`).then(json),
    ),
  )
  assert.equal(stack.emulator.state.calls.count('imds.token'), 2, 'the first token and one forced refresh')
  const tokens = new Set(answers.map((a) => a.access_token))
  assert.equal(tokens.size, 1, 'every caller got the same new token')
  assert.ok(!tokens.has(first.access_token))
  // Claims alone within the window: still the shared answer, no new call.
  const again = await json(
    await stack.get(`/token?resource=${mgmt}&claims=${encodeURIComponent(challengeB64)}`),
  )
  assert.ok(tokens.has(again.access_token))
  assert.equal(stack.emulator.state.calls.count('imds.token'), 2)
  // After the window a new challenge is served by a new upstream call.
  await clock.advance(6_000)
  const later = await json(
    await stack.get(`/token?resource=${mgmt}&claims=${encodeURIComponent(challengeB64)}`),
  )
  assert.ok(!tokens.has(later.access_token))
  assert.equal(stack.emulator.state.calls.count('imds.token'), 3)
})

test('a failed forced refresh answers the error, never the refused token', async (t) => {
  const clock = new FakeClock(Date.now())
  const stack = await startStack(t, { clock })
  const first = await json(await stack.get(`/token?resource=${mgmt}`))
  stack.emulator.state.faults.script('imds.token', [
    { status: 400, body: { error: 'invalid_request', error_description: 'Identity not found' } },
  ])
  const res = await stack.get(`/token?resource=${mgmt}&token_sha256_to_refresh=${sha256(first.access_token)}`)
  assert.equal(res.status, 400)
  assert.doesNotMatch(JSON.stringify(await json(res)), new RegExp(first.access_token.slice(-20)))
})

test('malformed CAE parameters are refused with 400 before anything goes upstream', async (t) => {
  const stack = await startStack(t)
  for (const query of [
    'claims=',
    'claims=not-json',
    `claims=${encodeURIComponent('[1,2]')}`,
    `claims=${encodeURIComponent(Buffer.from('"text"').toString('base64'))}`,
    'token_sha256_to_refresh=abc',
    `token_sha256_to_refresh=${'g'.repeat(64)}`,
    `claims=${encodeURIComponent(JSON.stringify({ a: 'x'.repeat(10_000) }))}`,
  ]) {
    const res = await stack.get(`/token?resource=${mgmt}&${query}`)
    assert.equal(res.status, 400, query.slice(0, 60))
    assert.equal((await json(res)).error, 'invalid_request')
  }
  const imds = await stack.get(
    `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${mgmt}&xms_cc=${encodeURIComponent('cp1,<x>')}`,
  )
  assert.equal(imds.status, 400)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0)
})
