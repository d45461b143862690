import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startInProcessApp } from '../support/app.ts'
import { json } from '../support/stack.ts'

/** Answer shapes of the daemon's app, asked in process (`app.request`, no socket). */

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** The OAuth error shape every refusal has (contract §3), never cached. */
async function assertErrorShape(res: Response, status: number, error: string): Promise<Record<string, any>> {
  assert.equal(res.status, status)
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/)
  assert.equal(res.headers.get('cache-control'), 'no-store')
  const body = await json(res)
  assert.deepEqual(Object.keys(body).sort(), ['correlation_id', 'error', 'error_description'])
  assert.equal(body.error, error)
  assert.match(body.correlation_id, uuid)
  return body
}

test('an unknown route is a 404 in the OAuth error shape, logged with its correlation id', async (t) => {
  const { request, logs } = await startInProcessApp(t)
  for (const path of ['/nope', '/token/extra', '/metadata/identity']) {
    const body = await assertErrorShape(await request(path), 404, 'not_found')
    assert.equal(body.error_description, 'No such route')
    const logged = logs.records.find((r) => r['correlation_id'] === body.correlation_id)
    assert.equal(logged?.['msg'], 'request failed')
    assert.equal(logged?.['error'], 'not_found')
  }
})

test('a bad query is a 400 invalid_request in the OAuth error shape, without asking IMDS', async (t) => {
  const { request, emulator } = await startInProcessApp(t)
  const cases: [string, RegExp][] = [
    ['/token', /exactly one of/],
    ['/token?resource=a&scope=a/.default', /exactly one of/],
    ['/token?resource=', /empty/],
    ['/token?resource=a&resource=b', /more than once/],
    ['/metadata/identity/oauth2/token?resource=https://management.azure.com', /api-version/],
  ]
  for (const [path, description] of cases) {
    const body = await assertErrorShape(await request(path), 400, 'invalid_request')
    assert.match(body.error_description, description, path)
  }
  await assertErrorShape(await request('/token?resource=https://x&identity=nobody'), 400, 'unknown_identity')
  assert.equal(emulator.state.calls.count('imds.token'), 0)
})

test('/healthz is 200 {status: ok}, not cached, with no Metadata header', async (t) => {
  const { request } = await startInProcessApp(t)
  const res = await request('/healthz', { Metadata: null })
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('cache-control'), 'no-store')
  assert.deepEqual(await json(res), { status: 'ok' })
})

test('/token answers the native token shape for the emulator-served identity', async (t) => {
  const { request } = await startInProcessApp(t)
  const res = await request('/token?resource=https://management.azure.com')
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('cache-control'), 'no-store')
  const body = await json(res)
  assert.deepEqual(Object.keys(body).sort(), [
    'access_token',
    'expires_in',
    'expires_on',
    'identity',
    'refresh_on',
    'resource',
    'scope',
    'token_type',
  ])
  assert.equal(body.token_type, 'Bearer')
  assert.equal(body.identity, 'mi')
  assert.equal(body.resource, 'https://management.azure.com')
  assert.equal(body.scope, 'https://management.azure.com/.default')
  assert.ok(body.expires_in > 0 && body.refresh_on <= body.expires_on)
})
