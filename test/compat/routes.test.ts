import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeJwt } from 'jose'
import { request } from 'undici'
import { json, startStack } from '../support/stack.ts'

const imds = '/metadata/identity/oauth2/token'
const mgmt = 'https://management.azure.com/'

function secretFile(value: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'sidecar-secret-')), 'identity-header')
  writeFileSync(file, `${value}\n`, { mode: 0o600 })
  return file
}

/** Raw request so the test controls Host exactly (fetch always sets it from the URL). */
async function raw(url: string, headers: Record<string, string>) {
  const res = await request(url, { headers })
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, any> }
}

test('IMDS route: the IMDS v1 answer shape, every number a string', async (t) => {
  const stack = await startStack(t)
  const before = Math.floor(Date.now() / 1000)
  const res = await stack.get(`${imds}?api-version=2018-02-01&resource=${encodeURIComponent(mgmt)}`)
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('cache-control'), 'no-store')
  const body = await json(res)
  assert.deepEqual(Object.keys(body).sort(), [
    'access_token',
    'client_id',
    'expires_in',
    'expires_on',
    'ext_expires_in',
    'not_before',
    'resource',
    'token_type',
  ])
  for (const key of Object.keys(body)) assert.equal(typeof body[key], 'string', key)
  for (const key of ['expires_in', 'expires_on', 'ext_expires_in', 'not_before'])
    assert.match(body[key], /^\d+$/, key)
  assert.equal(body.token_type, 'Bearer')
  assert.equal(body.resource, mgmt, 'the resource is echoed as asked')
  const system = stack.emulator.state.managedIdentities[0]!
  assert.equal(body.client_id, system.clientId, 'system-assigned: the token appid')
  assert.equal(decodeJwt(body.access_token).aud, 'https://management.azure.com')
  const expiresOn = Number(body.expires_on)
  assert.ok(Math.abs(expiresOn - (before + 3599)) <= 5, 'expires_on is an absolute epoch')
  assert.ok(Math.abs(Number(body.expires_in) - (expiresOn - before)) <= 5)
  assert.ok(Number(body.not_before) <= before + 1)
  // msal-node asks for the path with a trailing "/" (msal-common UrlString.canonicalizeUri).
  assert.equal((await stack.get(`${imds}/?api-version=2018-02-01&resource=${mgmt}`)).status, 200)
  // Same cache as /token: no second upstream call.
  assert.equal((await stack.get(`/token?resource=${mgmt}`)).status, 200)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 1)
})

test("IMDS route: api-version and resource are required, with IMDS's words", async (t) => {
  const stack = await startStack(t)
  const missing = await stack.get(`${imds}?resource=${mgmt}`)
  assert.equal(missing.status, 400)
  const body = await json(missing)
  assert.equal(body.error, 'invalid_request')
  assert.equal(body.error_description, 'Required query variable api-version is missing')
  assert.match(body.correlation_id, /^[0-9a-f-]{36}$/)
  const noResource = await json(await stack.get(`${imds}?api-version=2018-02-01`))
  assert.equal(noResource.error_description, 'Required query variable resource is missing')
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0)
})

test('IMDS route: client_id / object_id / msi_res_id / mi_res_id select the configured identity', async (t) => {
  const stack = await startStack(t, {
    configYaml: (emu) => {
      const [, one, two] = emu.state.managedIdentities
      return [
        'defaultIdentity: mi',
        'identities:',
        '  mi:',
        '    managedIdentity: {}',
        '  one:',
        '    managedIdentity:',
        `      userAssignedClientId: "${one!.clientId}"`,
        '  twoByResource:',
        '    managedIdentity:',
        `      userAssignedResourceId: "${two!.resourceId}"`,
        '  twoByObject:',
        '    managedIdentity:',
        `      userAssignedObjectId: "${two!.objectId}"`,
        '',
      ].join('\n')
    },
  })
  const [system, one, two] = stack.emulator.state.managedIdentities
  const ask = async (selector: string) => {
    const res = await stack.get(`${imds}?api-version=2018-02-01&resource=${mgmt}${selector}`)
    assert.equal(res.status, 200, selector)
    const body = await json(res)
    return { body, appid: decodeJwt(body.access_token)['appid'] }
  }
  assert.equal((await ask('')).appid, system!.clientId)
  const byClientId = await ask(`&client_id=${one!.clientId.toUpperCase()}`)
  assert.equal(byClientId.appid, one!.clientId)
  assert.equal(byClientId.body.client_id, one!.clientId)
  assert.equal((await ask(`&msi_res_id=${encodeURIComponent(two!.resourceId)}`)).appid, two!.clientId)
  assert.equal(
    (await ask(`&mi_res_id=${encodeURIComponent(two!.resourceId.toUpperCase())}`)).appid,
    two!.clientId,
  )
  const byObjectId = await ask(`&object_id=${two!.objectId}`)
  assert.equal(byObjectId.appid, two!.clientId)
  assert.equal(
    byObjectId.body.client_id,
    two!.clientId,
    'client_id from the token when the selector is not a client id',
  )
})

test('IMDS route: a selector no configured identity has is 400 "Identity not found", without asking IMDS', async (t) => {
  const stack = await startStack(t)
  const { clientId } = stack.emulator.state.managedIdentities[1]!
  for (const selector of [
    `client_id=${clientId}`,
    'object_id=00000000-0000-0000-0000-000000000001',
    'msi_res_id=/subscriptions/x',
  ]) {
    const res = await stack.get(`${imds}?api-version=2018-02-01&resource=${mgmt}&${selector}`)
    assert.equal(res.status, 400, selector)
    const body = await json(res)
    assert.equal(body.error, 'invalid_request')
    assert.equal(body.error_description, 'Identity not found')
  }
  const two = await json(
    await stack.get(`${imds}?api-version=2018-02-01&resource=${mgmt}&client_id=a&object_id=b`),
  )
  assert.equal(two.error_description, 'Multiple identity selectors specified')
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0)
})

test('an MTLS_POP identity is refused on both compat routes with a pointer to /token', async (t) => {
  const stack = await startStack(t, {
    configYaml: () =>
      `callers:\n  secretFile: ${secretFile('pop-secret')}\nidentities:\n  pop:\n    managedIdentity: {}\n    protocolScheme: MTLS_POP\n`,
  })
  const answers = [
    await stack.get(`${imds}?api-version=2018-02-01&resource=${mgmt}`, { 'X-IDENTITY-HEADER': 'pop-secret' }),
    await fetch(`${stack.url}/msi/token?api-version=2019-08-01&resource=${mgmt}`, {
      headers: { 'X-IDENTITY-HEADER': 'pop-secret' },
    }),
  ]
  for (const res of answers) {
    assert.equal(res.status, 400)
    const body = await json(res)
    assert.equal(body.error, 'invalid_request')
    assert.match(body.error_description, /MTLS_POP/)
    assert.match(body.error_description, /GET \/token/)
  }
  const calls = stack.emulator.state.calls
  assert.equal(
    calls.count('imds.token') + calls.count('imds.issuecredential') + calls.count('entra.mtls.token'),
    0,
  )
})

test('IMDS route: caller guard — Metadata, Host, X-Forwarded-For, and the secret when configured', async (t) => {
  const stack = await startStack(t)
  // @azure/identity's probe (imdsMsi.js): no query, no Metadata header; any HTTP answer but a 403
  // mentioning "unreachable" means "IMDS is there".
  const probe = await fetch(`${stack.url}${imds}`, { headers: { Accept: 'application/json' } })
  assert.equal(probe.status, 400)
  const probeBody = await json(probe)
  assert.equal(probeBody.error_description, 'Required metadata header not specified')
  assert.doesNotMatch(JSON.stringify(probeBody), /unreachable/)

  const path = `${imds}?api-version=2018-02-01&resource=${mgmt}`
  assert.equal((await stack.get(path, { 'X-Forwarded-For': '10.0.0.1' })).status, 403)
  const port = new URL(stack.url).port
  assert.equal(
    (await raw(`${stack.url}${path}`, { Metadata: 'true', Host: `evil.example:${port}` })).status,
    403,
  )
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0)

  const guarded = await startStack(t, {
    configYaml: () =>
      `callers:\n  secretFile: ${secretFile('imds-s3cret')}\nidentities:\n  mi:\n    managedIdentity: {}\n`,
  })
  assert.equal((await guarded.get(path)).status, 401)
  assert.equal((await guarded.get(path, { 'X-IDENTITY-HEADER': 'nope' })).status, 401)
  assert.equal((await guarded.get(path, { 'X-IDENTITY-HEADER': 'imds-s3cret' })).status, 200)
  assert.doesNotMatch(guarded.logs.text, /imds-s3cret/)
})

test('App Service route: 404 without a configured secret', async (t) => {
  const stack = await startStack(t)
  for (const headers of [{}, { 'X-IDENTITY-HEADER': 'anything' }, { Metadata: 'true' }]) {
    const res = await fetch(`${stack.url}/msi/token?api-version=2019-08-01&resource=${mgmt}`, { headers })
    assert.equal(res.status, 404)
    assert.equal((await json(res)).error, 'not_found')
  }
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0)
})

test('App Service route: X-IDENTITY-HEADER alone authenticates; the App Service answer shape', async (t) => {
  const stack = await startStack(t, {
    configYaml: (emu) =>
      `callers:\n  secretFile: ${secretFile('app-s3cret')}\nidentities:\n  mi:\n    managedIdentity: {}\n` +
      `  two:\n    managedIdentity:\n      userAssignedObjectId: "${emu.state.managedIdentities[2]!.objectId}"\n`,
  })
  const path = `/msi/token?api-version=2019-08-01&resource=${encodeURIComponent(mgmt)}`
  const get = (p: string, headers: Record<string, string>) => fetch(`${stack.url}${p}`, { headers })
  for (const headers of [
    {},
    { 'X-IDENTITY-HEADER': 'wrong' },
    { 'X-IDENTITY-HEADER': 'app-s3cre' },
    { Metadata: 'true' },
  ]) {
    const res = await get(path, headers)
    assert.equal(res.status, 401, JSON.stringify(headers))
    const body = await json(res)
    assert.equal(body.error, 'unauthorized')
    assert.doesNotMatch(JSON.stringify(body), /app-s3cret/)
  }
  const res = await get(path, { 'X-IDENTITY-HEADER': 'app-s3cret' })
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('cache-control'), 'no-store')
  const body = await json(res)
  assert.deepEqual(Object.keys(body).sort(), [
    'access_token',
    'client_id',
    'expires_on',
    'resource',
    'token_type',
  ])
  assert.match(body.expires_on, /^\d+$/)
  assert.ok(Math.abs(Number(body.expires_on) - (Math.floor(Date.now() / 1000) + 3599)) <= 5)
  assert.equal(body.resource, mgmt)
  assert.equal(body.token_type, 'Bearer')
  assert.equal(body.client_id, stack.emulator.state.managedIdentities[0]!.clientId)

  const two = stack.emulator.state.managedIdentities[2]!
  for (const name of ['principal_id', 'object_id']) {
    const selected = await json(
      await get(`${path}&${name}=${two.objectId}`, { 'X-IDENTITY-HEADER': 'app-s3cret' }),
    )
    assert.equal(decodeJwt(selected.access_token)['appid'], two.clientId, name)
  }
  const unknown = await get(`${path}&client_id=${two.clientId}`, { 'X-IDENTITY-HEADER': 'app-s3cret' })
  assert.equal(unknown.status, 400)
  assert.equal((await json(unknown)).error_description, 'Identity not found')

  for (const [p, description] of [
    [`/msi/token?resource=${mgmt}`, /api-version is missing/],
    [`/msi/token?api-version=2017-09-01&resource=${mgmt}`, /2019-08-01/],
    ['/msi/token?api-version=2019-08-01', /resource is missing/],
  ] as const) {
    const bad = await get(p, { 'X-IDENTITY-HEADER': 'app-s3cret' })
    assert.equal(bad.status, 400, p)
    assert.match((await json(bad)).error_description, description, p)
  }

  const port = new URL(stack.url).port
  assert.equal(
    (await get(path, { 'X-IDENTITY-HEADER': 'app-s3cret', 'X-Forwarded-For': '1.2.3.4' })).status,
    403,
  )
  assert.equal(
    (await raw(`${stack.url}${path}`, { 'X-IDENTITY-HEADER': 'app-s3cret', Host: `evil.example:${port}` }))
      .status,
    403,
  )
  assert.doesNotMatch(stack.logs.text, /app-s3cret/)
})

test('compat routes are refused while draining', async (t) => {
  const stack = await startStack(t)
  const shutdown = stack.daemon.shutdown(2000)
  const res = await stack.get(`${imds}?api-version=2018-02-01&resource=${mgmt}`)
  assert.equal(res.status, 503)
  assert.equal((await json(res)).error, 'shutting_down')
  await shutdown
})
