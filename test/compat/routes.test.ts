import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash, randomUUID } from 'node:crypto'
import { decodeJwt } from 'jose'
import { request } from 'undici'
import { registerApp } from '../../sidecar/src/emulator/entra.ts'
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
  // IMDS v1 issues the token for the resource as written (MSAL.NET sends it so): the slash stays.
  assert.equal(decodeJwt(body.access_token).aud, mgmt)
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
    [
      `/msi/token?api-version=2016-01-01&resource=${mgmt}`,
      /not supported; use 2017-09-01, 2019-08-01, 2025-03-30/,
    ],
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

test('App Service route, 2017-09-01 (MSI_ENDPOINT + MSI_SECRET): header "secret", clientid, expires_on epoch seconds in a string', async (t) => {
  const stack = await startStack(t, {
    configYaml: (emu) =>
      `callers:\n  secretFile: ${secretFile('old-s3cret')}\nidentities:\n  mi:\n    managedIdentity: {}\n` +
      `  one:\n    managedIdentity:\n      userAssignedClientId: "${emu.state.managedIdentities[1]!.clientId}"\n`,
  })
  const get = (p: string, headers: Record<string, string>) => fetch(`${stack.url}${p}`, { headers })
  // Go adal: `?api-version=2017-09-01&resource=…` (url.Values, sorted), header "Secret", no Metadata.
  const adal = `/msi/token?api-version=2017-09-01&resource=${encodeURIComponent(mgmt)}`
  for (const headers of [
    {},
    { secret: 'wrong' },
    { 'X-IDENTITY-HEADER': 'old-s3cret' },
    { Metadata: 'true' },
  ]) {
    const refused = await get(adal, headers)
    assert.equal(refused.status, 401, JSON.stringify(headers))
    const body = await json(refused)
    assert.equal(body.error, 'unauthorized')
    assert.doesNotMatch(JSON.stringify(body), /old-s3cret/)
  }
  const res = await get(adal, { Secret: 'old-s3cret' })
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('cache-control'), 'no-store')
  const body = await json(res)
  assert.equal(body.token_type, 'Bearer')
  assert.equal(body.resource, mgmt)
  assert.match(body.expires_on, /^\d+$/, 'epoch seconds, as a string')
  assert.ok(Math.abs(Number(body.expires_on) - (Math.floor(Date.now() / 1000) + 3599)) <= 5)
  assert.equal(decodeJwt(body.access_token)['appid'], stack.emulator.state.managedIdentities[0]!.clientId)
  // msrestazure get_msi_token_webapp: MSI_ENDPOINT + "/?resource=<raw>&api-version=2017-09-01&clientid=…"
  const one = stack.emulator.state.managedIdentities[1]!
  const webapp = await get(`//msi/token/?resource=${mgmt}&api-version=2017-09-01&clientid=${one.clientId}`, {
    secret: 'old-s3cret',
  })
  assert.equal(webapp.status, 200)
  assert.equal(decodeJwt((await json(webapp)).access_token)['appid'], one.clientId)
  // The IMDS address is the IMDS route's only.
  const port = new URL(stack.url).port
  assert.equal(
    (await raw(`http://127.0.0.1:${port}${adal}`, { secret: 'old-s3cret', Host: '169.254.169.254' })).status,
    403,
  )
  assert.doesNotMatch(stack.logs.text, /old-s3cret/)
})

test('App Service route, 2025-03-30: token_sha256_to_refresh replaces the refused token', async (t) => {
  const stack = await startStack(t, {
    configYaml: () =>
      `callers:\n  secretFile: ${secretFile('new-s3cret')}\nidentities:\n  mi:\n    managedIdentity: {}\n`,
  })
  const path = `/msi/token?api-version=2025-03-30&resource=${encodeURIComponent(mgmt)}`
  const headers = { 'X-IDENTITY-HEADER': 'new-s3cret' }
  const first = await json(await fetch(`${stack.url}${path}`, { headers }))
  const again = await json(await fetch(`${stack.url}${path}`, { headers }))
  assert.equal(again.access_token, first.access_token)
  const hash = createHash('sha256').update(first.access_token).digest('hex')
  const fresh = await fetch(`${stack.url}${path}&token_sha256_to_refresh=${hash}`, { headers })
  assert.equal(fresh.status, 200)
  assert.notEqual((await json(fresh)).access_token, first.access_token)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 2)
  // 2017-09-01 with X-IDENTITY-HEADER is not a dialect: its secret header is "secret".
  const mixed = await fetch(`${stack.url}/msi/token?api-version=2017-09-01&resource=${mgmt}`, { headers })
  assert.equal(mixed.status, 401)
})

const form = 'application/x-www-form-urlencoded'

test('Cloud Shell dialect: POST a form to the IMDS path with Metadata: true, answered as the GET', async (t) => {
  const stack = await startStack(t, {
    configYaml: (emu) =>
      'identities:\n  mi:\n    managedIdentity: {}\n' +
      `  two:\n    managedIdentity:\n      userAssignedResourceId: "${emu.state.managedIdentities[2]!.resourceId}"\n`,
  })
  const post = (
    path: string,
    body: string | Blob | ReadableStream<Uint8Array>,
    headers: Record<string, string> = {},
  ) =>
    fetch(`${stack.url}${path}`, {
      method: 'POST',
      headers: { Metadata: 'true', 'Content-Type': form, ...headers },
      body,
      ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
    } as RequestInit)
  // msrestazure get_msi_token / azure-identity CloudShellCredential: requests' form, Content-Length.
  const res = await post(imds, `resource=${encodeURIComponent(mgmt)}`)
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('cache-control'), 'no-store')
  const body = await json(res)
  const get = await json(
    await stack.get(`${imds}?api-version=2018-02-01&resource=${encodeURIComponent(mgmt)}`),
  )
  assert.deepEqual(Object.keys(body).sort(), Object.keys(get).sort())
  assert.equal(body.access_token, get.access_token)
  assert.equal(body.resource, mgmt)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 1)
  // Go adal: a chunked body (no Content-Length), msi_res_id; `//` and a trailing "/" as for the GET.
  const two = stack.emulator.state.managedIdentities[2]!
  const chunked = new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(`msi_res_id=${encodeURIComponent(two.resourceId)}&`))
      controller.enqueue(new TextEncoder().encode(`resource=${encodeURIComponent(mgmt)}`))
      controller.close()
    },
  })
  const adal = await post(`/${imds}/`, chunked, { 'Content-Type': `${form}; charset=utf-8` })
  assert.equal(adal.status, 200)
  assert.equal(decodeJwt((await json(adal)).access_token)['appid'], two.clientId)

  const refusals: [string, string | Blob, Record<string, string>, number, string, RegExp][] = [
    ['no resource', 'client_id=x', {}, 400, 'invalid_request', /resource is missing/],
    ['no Metadata', `resource=${mgmt}`, { Metadata: 'false' }, 400, 'invalid_request', /metadata header/],
    [
      'JSON',
      JSON.stringify({ resource: mgmt }),
      { 'Content-Type': 'application/json' },
      415,
      'unsupported_media_type',
      /x-www-form-urlencoded/,
    ],
    ['no type', new Blob([`resource=${mgmt}`]), {}, 415, 'unsupported_media_type', /no Content-Type/],
    ['5 KiB', `resource=${mgmt}&pad=${'a'.repeat(5000)}`, {}, 413, 'payload_too_large', /4096 bytes/],
    ['twice', `resource=${mgmt}&resource=${mgmt}`, {}, 400, 'invalid_request', /more than once/],
    [
      'two selectors',
      `resource=${mgmt}&client_id=a&msi_res_id=b`,
      {},
      400,
      'invalid_request',
      /Multiple identity selectors/,
    ],
  ]
  for (const [label, payload, headers, status, error, description] of refusals) {
    const init = label === 'no type' ? { 'Content-Type': '' } : {}
    const answer = await post(imds, payload, { ...headers, ...init })
    assert.equal(answer.status, status, label)
    const refusal = await json(answer)
    assert.equal(refusal.error, error, label)
    assert.match(refusal.error_description, description, label)
    assert.match(refusal.correlation_id, /^[0-9a-f-]{36}$/, label)
  }
  // A chunked body over 4 KiB is cut off while reading.
  const big = new ReadableStream({
    pull(controller) {
      controller.enqueue(new TextEncoder().encode('a'.repeat(1024)))
    },
  })
  const tooBig = await post(imds, big)
  assert.equal(tooBig.status, 413)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 2)
})

test('compat routes answer a permanent refusal 400 (what /token answers 502); transient failures stay 503 + Retry-After', async (t) => {
  const stack = await startStack(t, {
    configYaml: () =>
      `callers:\n  secretFile: ${secretFile('refusal-s3cret')}\nidentities:\n  mi:\n    managedIdentity: {}\n`,
    upstreamYaml: '  requestDeadlineMs: 1500\n',
  })
  const secret = { 'X-IDENTITY-HEADER': 'refusal-s3cret' }
  const malformed = { status: 200, body: { token_type: 'Bearer', expires_in: '3600' } }
  const routes: [string, string, Record<string, string>][] = [
    ['/token', `/token?resource=${encodeURIComponent(mgmt)}`, { Metadata: 'true', ...secret }],
    [
      'imds',
      `${imds}?api-version=2018-02-01&resource=${encodeURIComponent(mgmt)}`,
      { Metadata: 'true', ...secret },
    ],
    ['app service', `/msi/token?api-version=2019-08-01&resource=${encodeURIComponent(mgmt)}`, secret],
  ]
  const bodies: Record<string, any>[] = []
  for (const [label, path, headers] of routes) {
    stack.emulator.state.faults.script('imds.token', [malformed])
    const res = await fetch(`${stack.url}${path}`, { headers })
    assert.equal(res.status, label === '/token' ? 502 : 400, label)
    bodies.push(await json(res))
  }
  for (const body of bodies) {
    assert.equal(body.error, 'upstream_error')
    assert.equal(body.error_description, bodies[0]!.error_description, 'the same body')
  }
  stack.emulator.state.faults.clear()
  for (const [label, path, headers] of routes.slice(1)) {
    stack.emulator.state.faults.script(
      'imds.token',
      Array.from({ length: 20 }, () => ({ status: 500 })),
    )
    const res = await fetch(`${stack.url}${path}&transient=${label.length}`, { headers })
    assert.equal(res.status, 503, label)
    assert.match(res.headers.get('retry-after') ?? '', /^\d+$/, label)
    assert.equal((await json(res)).error, 'upstream_unavailable', label)
    stack.emulator.state.faults.clear()
  }
})

test('client_id on the compat routes also selects a confidential-client identity by its clientId', async (t) => {
  const clientId = randomUUID()
  const stack = await startStack(t, {
    env: { APP_SECRET: 'app-client-s3cret' },
    configYaml: (emu) => {
      registerApp(emu.state, { clientId, clientSecrets: ['app-client-s3cret'] })
      return [
        `callers:\n  secretFile: ${secretFile('cc-s3cret')}`,
        'defaultIdentity: mi',
        'identities:',
        '  mi:',
        '    managedIdentity: {}',
        '  app:',
        `    tenantId: ${emu.state.tenantId}`,
        `    clientId: ${clientId}`,
        '    clientCredentials:',
        '      - sourceType: ClientSecret',
        '        clientSecret: ${APP_SECRET}',
        '',
      ].join('\n')
    },
  })
  const headers = { 'X-IDENTITY-HEADER': 'cc-s3cret' }
  const imdsPath = `${imds}?api-version=2018-02-01&resource=${encodeURIComponent(mgmt)}`
  const system = stack.emulator.state.managedIdentities[0]!
  assert.equal(
    decodeJwt((await json(await stack.get(imdsPath, headers))).access_token)['appid'],
    system.clientId,
  )
  const imdsRes = await stack.get(`${imdsPath}&client_id=${clientId.toUpperCase()}`, headers)
  assert.equal(imdsRes.status, 200)
  const body = await json(imdsRes)
  assert.equal(body.client_id, clientId)
  assert.equal(decodeJwt(body.access_token)['appid'], clientId)
  const appService = await fetch(
    `${stack.url}/msi/token?api-version=2019-08-01&resource=${encodeURIComponent(mgmt)}&client_id=${clientId}`,
    { headers },
  )
  assert.equal(appService.status, 200)
  assert.equal(decodeJwt((await json(appService)).access_token)['appid'], clientId)
  assert.equal(stack.emulator.state.calls.count('entra.token'), 1, 'one cache entry for both routes')
})
