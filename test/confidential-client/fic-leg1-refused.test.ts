import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startStack } from '../support/stack.ts'

test('FIC leg 1 refusing the IMDS v2 certificate (invalid_client) drops it, mints a fresh one and asks once more', async (t) => {
  const stack = await startStack(t, {
    register: ({ emulator }) => ({ federatedSubjects: [emulator.state.managedIdentities[0]!.objectId] }),
    app: () =>
      [
        '    clientCredentials:',
        '      - sourceType: SignedAssertionFromManagedIdentity',
        '        useBoundCredential: true',
      ].join('\n'),
  })
  const { calls, faults } = stack.emulator.state
  faults.script('entra.mtls.token', [
    {
      status: 401,
      body: { error: 'invalid_client', error_description: 'AADSTS700027: revoked', error_codes: [700027] },
    },
  ])
  const { status, body } = await stack.token('https://graph.microsoft.com')
  assert.equal(status, 200, JSON.stringify(body))
  assert.equal(calls.count('imds.issuecredential'), 2)
  // refused leg 1, fresh leg 1, leg 2
  assert.equal(calls.count('entra.mtls.token'), 3)
  const refused = stack.logs.records.filter((r) => String(r['msg']).startsWith('FIC leg 1: Entra refused'))
  assert.equal(refused.length, 1)
  assert.equal(refused[0]!['reason'], 'invalid_client')
})
