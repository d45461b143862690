import { test } from 'node:test'
import assert from 'node:assert/strict'
import { decodeJwt } from 'jose'
import { json, startStack } from '../support/stack.ts'

test('GET /token serves a system-assigned managed identity Bearer token from IMDS v1', async (t) => {
  const stack = await startStack(t)
  const res = await stack.get('/token?resource=https://management.azure.com/')
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('cache-control'), 'no-store')
  const body = await json(res)
  assert.equal(body.token_type, 'Bearer')
  // The trailing slash is kept, as MSAL.NET keeps it for IMDS v1: it is part of the audience.
  assert.equal(body.resource, 'https://management.azure.com/')
  assert.equal(body.scope, 'https://management.azure.com//.default')
  assert.equal(body.identity, 'mi')
  assert.equal(typeof body.expires_on, 'number')
  assert.ok(body.expires_in > 3000 && body.expires_in <= 3599)
  assert.ok(body.refresh_on < body.expires_on)
  assert.equal(body.binding_certificate, undefined)
  const claims = decodeJwt(body.access_token)
  const system = stack.emulator.state.managedIdentities[0]!
  assert.equal(claims.aud, 'https://management.azure.com/')
  assert.equal(claims['appid'], system.clientId)
  assert.equal(claims.sub, system.objectId)
})

test('resource= and scope= name the same cache entry', async (t) => {
  const stack = await startStack(t)
  const a = await json(await stack.get('/token?resource=https://vault.azure.net'))
  const b = await json(await stack.get('/token?scope=https://vault.azure.net/.default'))
  assert.equal(a.access_token, b.access_token)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 1)
})

for (const selector of ['userAssignedClientId', 'userAssignedObjectId', 'userAssignedResourceId'] as const) {
  test(`user-assigned managed identity selected by ${selector}`, async (t) => {
    const stack = await startStack(t, {
      configYaml: (emu) => {
        const uami = emu.state.managedIdentities[2]!
        const value = {
          userAssignedClientId: uami.clientId,
          userAssignedObjectId: uami.objectId,
          userAssignedResourceId: uami.resourceId,
        }[selector]
        return `defaultIdentity: mi\nidentities:\n  mi:\n    managedIdentity: {}\n  uami:\n    managedIdentity:\n      ${selector}: "${value}"\n`
      },
    })
    const body = await json(await stack.get('/token?resource=https://storage.azure.com&identity=uami'))
    assert.equal(body.identity, 'uami')
    assert.equal(decodeJwt(body.access_token)['appid'], stack.emulator.state.managedIdentities[2]!.clientId)
  })
}

test("an identity IMDS does not know is a 400 with IMDS's words", async (t) => {
  const stack = await startStack(t, {
    configYaml: () =>
      'identities:\n  ghost:\n    managedIdentity:\n      userAssignedClientId: 9a9a9a9a-0000-0000-0000-000000000000\n',
  })
  const res = await stack.get('/token?resource=https://management.azure.com')
  assert.equal(res.status, 400)
  const body = await json(res)
  assert.equal(body.error, 'invalid_request')
  assert.match(body.error_description, /Identity not found/)
  assert.match(body.correlation_id, /^[0-9a-f-]{36}$/)
})

test('IMDS error text that echoes a JWT reaches neither the caller nor the log', async (t) => {
  const stack = await startStack(t)
  const echoed = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl'
  stack.emulator.state.faults.script('imds.token', [
    {
      status: 400,
      body: { error: 'invalid_request', error_description: `bad assertion ${echoed}\nline two` },
    },
  ])
  const res = await stack.get('/token?resource=https://management.azure.com')
  assert.equal(res.status, 400)
  const body = await json(res)
  assert.match(body.error_description, /bad assertion \[jwt\] line two/)
  assert.ok(!JSON.stringify(body).includes(echoed))
  assert.ok(!JSON.stringify(stack.logs.records).includes(echoed))
})

test('an unknown resource is passed through as invalid_resource', async (t) => {
  const stack = await startStack(t)
  const res = await stack.get('/token?resource=https://nothing.invalid')
  assert.equal(res.status, 400)
  const body = await json(res)
  assert.equal(body.error, 'invalid_resource')
  assert.match(body.error_description, /AADSTS500011/)
})

test('bad queries are clear 400s, never crashes', async (t) => {
  const stack = await startStack(t)
  const cases: [string, RegExp][] = [
    ['/token', /exactly one of/],
    ['/token?resource=a&scope=a/.default', /exactly one of/],
    ['/token?resource=', /empty/],
    ['/token?scope=https://graph.microsoft.com/User.Read', /\.default/],
    ['/token?resource=a&resource=b', /more than once/],
    ['/token?resource=https%3A%2F%2Fx%0Ay', /control characters/],
    [`/token?resource=${'a'.repeat(3000)}`, /longer than/],
  ]
  for (const [path, description] of cases) {
    const res = await stack.get(path)
    assert.equal(res.status, 400, path)
    const body = await json(res)
    assert.equal(body.error, 'invalid_request', path)
    assert.match(body.error_description, description, path)
  }
  const unknown = await stack.get('/token?resource=https://x&identity=nobody')
  assert.equal(unknown.status, 400)
  assert.equal((await json(unknown)).error, 'unknown_identity')
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0)
})

test('unknown routes answer 404 in the same error shape', async (t) => {
  const stack = await startStack(t)
  const res = await stack.get('/nope')
  assert.equal(res.status, 404)
  assert.equal((await json(res)).error, 'not_found')
})

test('1000 concurrent cold requests make one IMDS call', async (t) => {
  const stack = await startStack(t)
  const responses = await Promise.all(
    Array.from({ length: 1000 }, () => stack.get('/token?resource=https://management.azure.com').then(json)),
  )
  assert.equal(new Set(responses.map((r) => r.access_token)).size, 1)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 1)
})

test('IMDS 500s are retried and the caller still gets the token', async (t) => {
  const stack = await startStack(t)
  stack.emulator.state.faults.script('imds.token', [{ status: 500 }, { status: 503 }])
  const res = await stack.get('/token?resource=https://management.azure.com')
  assert.equal(res.status, 200)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 3)
})

test('health, readiness and metrics need no Metadata header', async (t) => {
  const stack = await startStack(t)
  assert.equal((await fetch(`${stack.url}/healthz`)).status, 200)
  const ready = await fetch(`${stack.url}/readyz`)
  assert.equal(ready.status, 200)
  assert.equal((await json(ready)).status, 'ready')
  await stack.get('/token?resource=https://management.azure.com')
  const metrics = await (await fetch(`${stack.url}/metrics`)).text()
  assert.match(metrics, /credential_sidecar_requests_total\{route="\/token",status="200"\} 1/)
  assert.match(metrics, /credential_sidecar_token_cache_events_total\{event="miss"\} 1/)
  assert.match(
    metrics,
    /credential_sidecar_upstream_request_duration_seconds_count\{endpoint="imds.token",status="200"\} 1/,
  )
})
