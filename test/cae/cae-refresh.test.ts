import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { asksForRefresh, forcedRefresh } from '../../sidecar/src/identities/cae-refresh.ts'
import type { AcquiredToken } from '../../sidecar/src/model/token.ts'

const cached: AcquiredToken = { tokenType: 'Bearer', accessToken: 'cached-token', expiresOn: 0 }
const cachedHash = createHash('sha256').update('cached-token').digest('hex')
const otherHash = createHash('sha256').update('an-older-token').digest('hex')
const claims = '{"access_token":{"nbf":{"essential":true,"value":"1"}}}'

test('no claims and no hash: an ordinary request', () => {
  assert.equal(asksForRefresh({}), false)
  assert.equal(asksForRefresh({ clientCapabilities: ['cp1'] }), false)
  assert.equal(forcedRefresh({ clientCapabilities: ['cp1'] }, cached), undefined)
})

test("the cached token's hash forces a refresh that names it, with the claims when given", () => {
  assert.deepEqual(forcedRefresh({ tokenSha256ToRefresh: cachedHash }, cached), {
    tokenSha256ToRefresh: cachedHash,
  })
  assert.deepEqual(forcedRefresh({ tokenSha256ToRefresh: cachedHash, claims }, cached), {
    claims,
    tokenSha256ToRefresh: cachedHash,
  })
})

test('a hash naming another (already replaced) token is answered from the cache, claims or not', () => {
  assert.equal(forcedRefresh({ tokenSha256ToRefresh: otherHash }, cached), undefined)
  assert.equal(forcedRefresh({ tokenSha256ToRefresh: otherHash, claims }, cached), undefined)
})

test("a claims challenge forces a refresh, naming the cached token's hash when there is one", () => {
  assert.deepEqual(forcedRefresh({ claims }, cached), { claims, tokenSha256ToRefresh: cachedHash })
  assert.deepEqual(forcedRefresh({ claims }, undefined), { claims })
})

test('a hash with nothing cached forces nothing unless claims come with it', () => {
  assert.equal(forcedRefresh({ tokenSha256ToRefresh: otherHash }, undefined), undefined)
  assert.deepEqual(forcedRefresh({ tokenSha256ToRefresh: otherHash, claims }, undefined), { claims })
})
