import { test } from 'node:test'
import assert from 'node:assert/strict'
import { hostileDaemon, hostileServer, imdsV1Yaml, sendJson, tokenPath } from './support.ts'

/**
 * Contract §3: an access token's lifetime is the smallest of expires_in / expires_on and, for a JWT,
 * its exp; above 48 h, zero or negative (or unreadable) → a malformed answer: 502, never cached.
 */

const imdsPath = '/metadata/identity/oauth2/token'
const HOUR = 3600

function jwt(claims: Record<string, unknown>): string {
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')
  return `${part({ alg: 'RS256', typ: 'JWT' })}.${part(claims)}.c2lnbmF0dXJl`
}

const nowS = () => Math.floor(Date.now() / 1000)

/** IMDS answers `body(call)` (200) to every call; the daemon asks once, then once more. */
async function twice(t: import('node:test').TestContext, body: (call: number) => unknown) {
  const imds = await hostileServer(t, (_req, res, call) => sendJson(res, 200, body(call)))
  const daemon = await hostileDaemon(t, imdsV1Yaml(imds.url))
  const first = await daemon.get(tokenPath)
  const second = await daemon.get(tokenPath)
  return { first, second, calls: imds.seen.count(imdsPath), daemon }
}

const refused: [string, (now: number) => Record<string, unknown>][] = [
  ['expires_in 1e12', () => ({ access_token: 'opaque', expires_in: 1e12, token_type: 'Bearer' })],
  [
    'expires_in "1e12" (a string)',
    () => ({ access_token: 'opaque', expires_in: '1000000000000', token_type: 'Bearer' }),
  ],
  [
    'expires_on 1e12 (year 33658)',
    () => ({ access_token: 'opaque', expires_on: 1e12, token_type: 'Bearer' }),
  ],
  ['expires_in 0', () => ({ access_token: 'opaque', expires_in: '0', token_type: 'Bearer' })],
  ['expires_in negative', () => ({ access_token: 'opaque', expires_in: -30, token_type: 'Bearer' })],
  ['expires_in not a number', () => ({ access_token: 'opaque', expires_in: 'soon', token_type: 'Bearer' })],
  ['expires_in an object', () => ({ access_token: 'opaque', expires_in: { s: 3599 }, token_type: 'Bearer' })],
  [
    'expires_on in the past (expired on arrival)',
    (now) => ({ access_token: 'opaque', expires_on: String(now - 60), token_type: 'Bearer' }),
  ],
  [
    'a JWT whose exp has passed, however long expires_in says',
    (now) => ({ access_token: jwt({ exp: now - 10 }), expires_in: '3599', token_type: 'Bearer' }),
  ],
  ['49 hours', () => ({ access_token: 'opaque', expires_in: String(49 * HOUR), token_type: 'Bearer' })],
  ['no lifetime at all', () => ({ access_token: 'opaque', token_type: 'Bearer' })],
  ['access_token a number', () => ({ access_token: 12345, expires_in: '3599', token_type: 'Bearer' })],
  ['token_type a number', () => ({ access_token: 'opaque', expires_in: '3599', token_type: 7 })],
  ['an error with a 200', () => ({ error: 'invalid_request', error_description: 'Identity not found' })],
  [
    'an error and a token with a 200',
    () => ({ error: 'server_error', access_token: 'opaque', expires_in: '3599' }),
  ],
  ['a JSON array', () => [1, 2] as unknown as Record<string, unknown>],
]

for (const [name, body] of refused) {
  test(`IMDS answers 200 with ${name}: 502 upstream_error, not cached`, async (t) => {
    const { first, second, calls, daemon } = await twice(t, () => body(nowS()))
    assert.equal(first.status, 502, JSON.stringify(first.body))
    assert.equal(first.body.error, 'upstream_error')
    assert.equal(second.status, 502)
    assert.equal(calls, 2, 'the second request went upstream again')
    assert.ok(!daemon.logs.text.includes('"level":"fatal"'))
    assert.ok(!daemon.logs.text.includes('internal_error'), 'no 500 internal_error on the way')
  })
}

test('the smallest lifetime wins: a JWT exp 10 minutes away caps an expires_in of 24 h', async (t) => {
  const now = nowS()
  const { first } = await twice(t, () => ({
    access_token: jwt({ exp: now + 600 }),
    expires_in: String(24 * HOUR),
    expires_on: String(now + 24 * HOUR),
    token_type: 'Bearer',
  }))
  assert.equal(first.status, 200, JSON.stringify(first.body))
  assert.ok(Math.abs(first.body.expires_on - (now + 600)) <= 2, `expires_on ${first.body.expires_on}`)
})

test('expires_on smaller than expires_in wins', async (t) => {
  const now = nowS()
  const { first } = await twice(t, () => ({
    access_token: 'opaque',
    expires_in: '7200',
    expires_on: String(now + 1800),
    token_type: 'Bearer',
  }))
  assert.equal(first.status, 200)
  assert.ok(Math.abs(first.body.expires_on - (now + 1800)) <= 2)
})

test('a token that is not a JWT is served on expires_in alone, and cached', async (t) => {
  const { first, second, calls } = await twice(t, () => ({
    access_token: 'opaque-token',
    expires_in: '3599',
    token_type: 'Bearer',
  }))
  assert.equal(first.status, 200, JSON.stringify(first.body))
  assert.equal(first.body.access_token, 'opaque-token')
  assert.equal(second.status, 200)
  assert.equal(calls, 1, 'a good answer is cached')
})

test('exactly 48 hours is accepted', async (t) => {
  const { first } = await twice(t, () => ({
    access_token: 'opaque',
    expires_in: String(48 * HOUR),
    token_type: 'Bearer',
  }))
  assert.equal(first.status, 200, JSON.stringify(first.body))
})
