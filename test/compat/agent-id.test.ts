import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeJwt } from 'jose'
import { request } from 'undici'
import { parseConfig } from '../../sidecar/src/config/load.ts'
import { describeConfig } from '../../sidecar/src/config/describe.ts'
import { FakeClock } from '../support/fake-clock.ts'
import { json, startStack } from '../support/stack.ts'

/**
 * Drop-in routes of the Microsoft Entra SDK for AgentID container (issue 10 item 7, contract §3):
 * `/AuthorizationHeaderUnauthenticated/{api}` and `/DownstreamApiUnauthenticated/{api}`.
 */

const mgmtScope = 'https://management.azure.com/.default'

/** A resource on plain HTTP loopback that answers what it saw. */
async function startEchoResource(t: TestContext) {
  const seen: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[] = []
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    seen.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      body: Buffer.concat(chunks).toString(),
    })
    if (req.url?.includes('/empty')) {
      res.writeHead(204, { 'x-resource': 'yes' })
      return res.end()
    }
    res.writeHead(201, {
      'content-type': 'application/json',
      'content-language': 'en',
      'x-resource': 'yes',
      'last-modified': 'Wed, 21 Oct 2015 07:28:00 GMT',
    })
    res.end(JSON.stringify({ method: req.method, url: req.url }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

function agentIdYaml(baseUrl: string, extra = ''): string {
  return [
    'compat:',
    '  agentIdSidecar: true',
    'identities:',
    '  mi:',
    '    managedIdentity: {}',
    'downstreamApis:',
    '  arm:',
    `    baseUrl: ${baseUrl}/base`,
    `    scopes: [${mgmtScope}]`,
    extra,
  ].join('\n')
}

/** No Metadata header: the container's clients never send one. */
const plain = (url: string, init: RequestInit = {}) => fetch(url, init)

test('AuthorizationHeaderUnauthenticated: {"authorizationHeader"} without a Metadata header, same cache as /token', async (t) => {
  const resource = await startEchoResource(t)
  const stack = await startStack(t, { configYaml: () => agentIdYaml(resource.url) })
  const res = await plain(`${stack.url}/AuthorizationHeaderUnauthenticated/arm`)
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('cache-control'), 'no-store')
  const body = await json(res)
  assert.deepEqual(Object.keys(body), ['authorizationHeader'])
  const token = await json(await stack.get(`/token?scope=${mgmtScope}`))
  assert.equal(body.authorizationHeader, `Bearer ${token.access_token}`)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 1)
  // optionsOverride.Scopes picks another (single, .default) scope, as the container allows.
  const graph = await json(
    await plain(
      `${stack.url}/AuthorizationHeaderUnauthenticated/arm?optionsOverride.Scopes=https://graph.microsoft.com/.default&optionsOverride.RequestAppToken=true`,
    ),
  )
  assert.match(graph.authorizationHeader, /^Bearer /)
  assert.notEqual(graph.authorizationHeader, body.authorizationHeader)
  // A claims challenge (optionsOverride.AcquireTokenOptions.Claims) forces a fresh token.
  const claims = encodeURIComponent(
    JSON.stringify({ access_token: { nbf: { essential: true, value: '1' } } }),
  )
  const fresh = await json(
    await plain(
      `${stack.url}/AuthorizationHeaderUnauthenticated/arm?optionsOverride.AcquireTokenOptions.Claims=${claims}`,
    ),
  )
  assert.notEqual(fresh.authorizationHeader, body.authorizationHeader)
})

test('AgentID routes demand neither Metadata nor the caller secret, keep Host and forwarding checks, and refuse what they cannot honour', async (t) => {
  const resource = await startEchoResource(t)
  const secretFile = join(mkdtempSync(join(tmpdir(), 'sidecar-secret-')), 'identity-header')
  writeFileSync(secretFile, 'agent-id-secret', { mode: 0o600 })
  const stack = await startStack(t, {
    configYaml: () => `callers:\n  secretFile: ${secretFile}\n${agentIdYaml(resource.url)}`,
  })
  const url = `${stack.url}/AuthorizationHeaderUnauthenticated/arm`
  assert.equal((await plain(url)).status, 200, "the container's clients never send the secret")
  assert.equal((await plain(url, { headers: { 'X-IDENTITY-HEADER': 'wrong' } })).status, 200)
  assert.equal(
    (
      await plain(`${stack.url}/token?resource=https://management.azure.com`, {
        headers: { Metadata: 'true' },
      })
    ).status,
    401,
    'other routes still demand it',
  )
  for (const header of ['X-Forwarded-For', 'Forwarded', 'X-Real-IP', 'X-Forwarded-Host']) {
    const res = await plain(url, { headers: { [header]: '10.0.0.1' } })
    assert.equal(res.status, 403, header)
    assert.equal(res.headers.get('content-type'), 'application/problem+json')
    assert.equal((await json(res)).status, 403)
  }
  const rebound = await request(url, { headers: { Host: 'evil.example' } })
  assert.equal(rebound.statusCode, 403, 'DNS rebinding')
  await rebound.body.dump()
  const imdsHost = await request(url, { headers: { Host: '169.254.169.254' } })
  assert.equal(imdsHost.statusCode, 403, 'the IMDS address is the IMDS route only')
  await imdsHost.body.dump()
  for (const query of [
    'AgentIdentity=11111111-1111-1111-1111-111111111111',
    'AgentUsername=someone@contoso.com',
    'agentuserid=22222222-2222-2222-2222-222222222222',
    'optionsOverride.ProtocolScheme=Bearer',
    'optionsOverride.AcquireTokenOptions.PopClaim=x',
    'optionsOverride.AcquireTokenOptions.Tenant=contoso.onmicrosoft.com',
    'optionsOverride.AcquireTokenOptions.FmiPath=agents/one',
    'optionsOverride.AcquireTokenOptions.PopPublicKey=abc',
    'optionsOverride.AcquireTokenOptions.LongRunningWebApiSessionKey=k',
    'optionsOverride.RequestAppToken=false',
    'optionsOverride.Scopes=User.Read',
  ]) {
    const res = await plain(`${url}?${query}`)
    assert.equal(res.status, 400, query)
    assert.equal(res.headers.get('content-type'), 'application/problem+json', query)
    const problem = await json(res)
    assert.equal(problem.status, 400, query)
    assert.equal(problem.title, 'Bad Request', query)
    assert.equal(problem.type, 'https://tools.ietf.org/html/rfc9110#section-15.5.1', query)
    assert.equal(typeof problem.detail, 'string', query)
  }
  assert.ok(
    stack.logs.records.some(
      (r) =>
        r['msg'] === 'config warning' &&
        /agentIdSidecar is on without callers\.allow/.test(String(r['warning'])),
    ),
    'the daemon warns at start too',
  )
  const unknown = await plain(`${stack.url}/AuthorizationHeaderUnauthenticated/nope`)
  assert.equal(unknown.status, 400)
  assert.match((await json(unknown)).detail, /Not able to resolve 'nope'/)
  assert.doesNotMatch(stack.logs.text, /agent-id-secret/)
})

test('AgentID parity: route names in any case, POST, BaseUrl ignored, CorrelationId logged, ForceRefresh rate-limited', async (t) => {
  const resource = await startEchoResource(t)
  const clock = new FakeClock()
  const stack = await startStack(t, { clock, configYaml: () => agentIdYaml(resource.url) })
  const first = await json(await plain(`${stack.url}/authorizationheaderunauthenticated/arm`))
  assert.match(first.authorizationHeader, /^Bearer /)
  const posted = await plain(`${stack.url}/AUTHORIZATIONHEADERUNAUTHENTICATED/arm`, { method: 'POST' })
  assert.equal(posted.status, 200)
  assert.equal((await json(posted)).authorizationHeader, first.authorizationHeader)
  // The api name is looked up as configured (ASP.NET's named options are case-sensitive).
  assert.equal((await plain(`${stack.url}/AuthorizationHeaderUnauthenticated/ARM`)).status, 400)
  const lower = await plain(`${stack.url}/downstreamapiunauthenticated/arm`, { method: 'POST' })
  assert.equal(lower.status, 200)
  assert.equal((await json(lower)).statusCode, 201)

  const correlation = '3f0c8a7e-5d5b-4c4e-9a7e-0d6f2b9c1a11'
  const ignored = await plain(
    `${stack.url}/DownstreamApiUnauthenticated/arm?optionsOverride.BaseUrl=https://evil.example&optionsOverride.AcquireTokenOptions.CorrelationId=${correlation}`,
    { method: 'POST' },
  )
  assert.equal(ignored.status, 200)
  assert.equal(JSON.parse((await json(ignored)).content).url, '/base', 'the configured base URL stands')
  assert.ok(
    stack.logs.records.some((r) => r['caller_correlation_id'] === correlation),
    'the caller correlation id is logged',
  )
  assert.ok(stack.logs.records.some((r) => r['msg'] === 'optionsOverride.BaseUrl ignored'))

  // A parameter the container has no binding for is ignored there, so here too (logged at debug).
  const unknown = await plain(
    `${stack.url}/AuthorizationHeaderUnauthenticated/arm?optionsOverride.SomethingNew=1&api-version=2025-01-01`,
  )
  assert.equal(unknown.status, 200)
  assert.equal((await json(unknown)).authorizationHeader, first.authorizationHeader)
  const ignoredLog = stack.logs.records.find((r) => r['msg'] === 'query parameters ignored')
  assert.deepEqual(ignoredLog?.['ignored'], ['optionsOverride.SomethingNew', 'api-version'])

  const calls = () => stack.emulator.state.calls.count('imds.token')
  const before = calls()
  const force = `${stack.url}/AuthorizationHeaderUnauthenticated/arm?optionsOverride.AcquireTokenOptions.ForceRefresh=true`
  const forced = await json(await plain(force))
  assert.notEqual(forced.authorizationHeader, first.authorizationHeader, 'a fresh token')
  assert.equal(calls(), before + 1)
  const again = await json(await plain(force))
  assert.equal(again.authorizationHeader, forced.authorizationHeader, 'rate-limited: the same answer')
  assert.equal(calls(), before + 1, 'no second upstream call within the rate limit')
  const plainAfter = await json(await plain(`${stack.url}/AuthorizationHeaderUnauthenticated/arm`))
  assert.equal(
    plainAfter.authorizationHeader,
    forced.authorizationHeader,
    'the refreshed token replaced the cached one',
  )
  // On the proxied route too: the resource sees a token it has not seen before.
  await clock.advance(6000) // past the per-entry rate limit
  await plain(
    `${stack.url}/DownstreamApiUnauthenticated/arm?optionsOverride.AcquireTokenOptions.ForceRefresh=True`,
    { method: 'POST' },
  )
  assert.equal(calls(), before + 2)
  const sent = resource.seen.at(-1)!.headers.authorization
  assert.ok(sent !== forced.authorizationHeader && sent?.startsWith('Bearer '), 'a fresh token downstream')
})

test('AgentID: ManagedIdentity.UserAssignedClientId selects a configured managed identity by client id', async (t) => {
  const resource = await startEchoResource(t)
  const stack = await startStack(t, {
    configYaml: (emu) =>
      agentIdYaml(resource.url).replace(
        'downstreamApis:',
        `  one:\n    managedIdentity:\n      userAssignedClientId: "${emu.state.managedIdentities[1]!.clientId}"\ndownstreamApis:`,
      ),
  })
  const [system, one] = stack.emulator.state.managedIdentities
  const appid = (header: string) => decodeJwt(header.replace(/^Bearer /, ''))['appid']
  const base = `${stack.url}/AuthorizationHeaderUnauthenticated/arm`
  assert.equal(appid((await json(await plain(base))).authorizationHeader), system!.clientId)
  const key = 'optionsOverride.AcquireTokenOptions.ManagedIdentity.UserAssignedClientId'
  const selected = await plain(`${base}?${key}=${one!.clientId.toUpperCase()}`)
  assert.equal(selected.status, 200)
  assert.equal(appid((await json(selected)).authorizationHeader), one!.clientId)
  const proxied = await plain(`${stack.url}/DownstreamApiUnauthenticated/arm?${key}=${one!.clientId}`, {
    method: 'POST',
  })
  assert.equal((await json(proxied)).statusCode, 201)
  assert.equal(appid(resource.seen.at(-1)!.headers.authorization ?? ''), one!.clientId)
  const unknown = await plain(`${base}?${key}=${stack.emulator.state.managedIdentities[2]!.clientId}`)
  assert.equal(unknown.status, 400)
  assert.match((await json(unknown)).detail, /UserAssignedClientId/)
})

test('AgentID: ExtraHeaderParameters and ExtraQueryParameters reach the resource; credentials and hop-by-hop headers are refused', async (t) => {
  const resource = await startEchoResource(t)
  const stack = await startStack(t, { configYaml: () => agentIdYaml(resource.url) })
  const route = `${stack.url}/DownstreamApiUnauthenticated/arm`
  const res = await plain(
    `${route}?optionsOverride.RelativePath=keys&optionsOverride.ExtraHeaderParameters.x-ms-tokenboundauth=true` +
      '&optionsOverride.ExtraHeaderParameters.X-Empty=&optionsOverride.ExtraQueryParameters.api-version=7.4' +
      '&optionsOverride.extraqueryparameters.second=two%20words',
    { method: 'POST' },
  )
  assert.equal(res.status, 200)
  const seen = resource.seen.at(-1)!
  assert.equal(seen.headers['x-ms-tokenboundauth'], 'true')
  assert.equal(seen.headers['x-empty'], undefined, 'an empty value is skipped, as the container does')
  const url = new URL(seen.url, 'http://x')
  assert.equal(url.pathname, '/base/keys')
  assert.equal(url.searchParams.get('api-version'), '7.4')
  assert.equal(url.searchParams.get('second'), 'two words')
  assert.match(seen.headers.authorization ?? '', /^Bearer /, "the sidecar's token, not the caller's")
  for (const header of [
    'Authorization',
    'authorization',
    'Host',
    'Cookie',
    'Proxy-Authorization',
    'Proxy-Foo',
    'Connection',
    'Transfer-Encoding',
    'Upgrade',
    'TE',
    'Keep-Alive',
    'X-Forwarded-For',
    'X-IDENTITY-HEADER',
    'Bad Name',
  ]) {
    const refused = await plain(
      `${route}?optionsOverride.ExtraHeaderParameters.${encodeURIComponent(header)}=x`,
      { method: 'POST' },
    )
    assert.equal(refused.status, 400, header)
    assert.equal((await json(refused)).status, 400, header)
  }
  const onHeaderRoute = await plain(
    `${stack.url}/AuthorizationHeaderUnauthenticated/arm?optionsOverride.ExtraHeaderParameters.Authorization=x`,
  )
  assert.equal(onHeaderRoute.status, 400)
  assert.equal(resource.seen.length, 1, 'no refused request reached the resource')
})

test('AgentID: upstream refusals are 401 problem details, transient failures 503 with Retry-After', async (t) => {
  const resource = await startEchoResource(t)
  const stack = await startStack(t, {
    configYaml: () => agentIdYaml(resource.url),
    upstreamYaml: '  requestDeadlineMs: 1500\n',
  })
  const url = `${stack.url}/AuthorizationHeaderUnauthenticated/arm`
  stack.emulator.state.faults.script('imds.token', [
    { status: 400, body: { error: 'invalid_request', error_description: 'Identity not found' } },
  ])
  const refused = await plain(url)
  assert.equal(refused.status, 401)
  assert.equal(refused.headers.get('content-type'), 'application/problem+json')
  const problem = await json(refused)
  assert.deepEqual(
    { type: problem.type, title: problem.title, status: problem.status },
    { type: 'https://tools.ietf.org/html/rfc9110#section-15.5.2', title: 'Unauthorized', status: 401 },
  )
  assert.match(problem.detail, /Identity not found/)
  stack.emulator.state.faults.script('imds.token', [{ status: 200, body: { token_type: 'Bearer' } }])
  assert.equal((await plain(url)).status, 401, 'a malformed answer is a refusal too')
  stack.emulator.state.faults.script(
    'imds.token',
    Array.from({ length: 20 }, () => ({ status: 500 })),
  )
  const transient = await plain(url)
  assert.equal(transient.status, 503)
  assert.match(transient.headers.get('retry-after') ?? '', /^\d+$/)
  assert.equal((await json(transient)).title, 'Service Unavailable')
})

test('check-config warns when the AgentID routes are on without callers.allow', () => {
  const yaml = (extra: string) =>
    `compat:\n  agentIdSidecar: true\n${extra}identities:\n  mi:\n    managedIdentity: {}\n`
  const open = describeConfig(parseConfig(yaml(''), { source: 'c.yaml', env: {} }))
  assert.match(open, /warnings:\n  compat\.agentIdSidecar is on without callers\.allow/)
  const allowed = describeConfig(
    parseConfig(yaml(`callers:\n  allow:\n    - uid: ${process.getuid?.() ?? 0}\n      identities: [mi]\n`), {
      source: 'c.yaml',
      env: {},
    }),
  )
  assert.doesNotMatch(allowed, /warnings:/)
})

test('the AgentID routes are not served unless compat.agentIdSidecar is true', async (t) => {
  const resource = await startEchoResource(t)
  const stack = await startStack(t, {
    configYaml: () => agentIdYaml(resource.url).replace('agentIdSidecar: true', 'agentIdSidecar: false'),
  })
  assert.equal((await plain(`${stack.url}/AuthorizationHeaderUnauthenticated/arm`)).status, 404)
  assert.equal((await plain(`${stack.url}/DownstreamApiUnauthenticated/arm`, { method: 'POST' })).status, 404)
})

test('DownstreamApiUnauthenticated: calls the api with the token and answers {statusCode, headers, content}', async (t) => {
  const resource = await startEchoResource(t)
  const stack = await startStack(t, { configYaml: () => agentIdYaml(resource.url) })
  const res = await plain(
    `${stack.url}/DownstreamApiUnauthenticated/arm?optionsOverride.RelativePath=${encodeURIComponent('items/1?expand=all')}&optionsOverride.HttpMethod=Put`,
    {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie: 'session=caller' },
      body: '{"name":"one"}',
    },
  )
  assert.equal(res.status, 200)
  const body = await json(res)
  assert.equal(body.statusCode, 201)
  // The container's headers are HttpContent.Headers: content headers only, .NET's names.
  assert.deepEqual(body.headers, {
    'Content-Type': ['application/json'],
    'Content-Language': ['en'],
    'Last-Modified': ['Wed, 21 Oct 2015 07:28:00 GMT'],
    'Content-Length': [String(Buffer.byteLength(body.content))],
  })
  assert.deepEqual(JSON.parse(body.content), { method: 'PUT', url: '/base/items/1?expand=all' })
  const seen = resource.seen[0]!
  const token = await json(await stack.get(`/token?scope=${mgmtScope}`))
  assert.equal(seen.headers.authorization, `Bearer ${token.access_token}`)
  assert.equal(seen.headers['content-type'], 'application/json')
  assert.equal(seen.body, '{"name":"one"}')
  assert.equal(seen.headers.cookie, undefined, "the caller's cookies stay behind")
  // The path cannot leave baseUrl, and the host is never the caller's choice.
  const escape = await plain(
    `${stack.url}/DownstreamApiUnauthenticated/arm?optionsOverride.RelativePath=${encodeURIComponent('../../admin')}`,
    { method: 'POST' },
  )
  assert.equal(escape.status, 400)
  assert.equal(resource.seen.length, 1)
  // An empty answer: no content, and no content headers to speak of.
  const empty = await json(
    await plain(`${stack.url}/DownstreamApiUnauthenticated/arm?optionsOverride.RelativePath=empty`, {
      method: 'POST',
    }),
  )
  assert.deepEqual(empty, { statusCode: 204, headers: {}, content: null })
})

test('MTLS_POP api: the authorization header comes with its binding certificate; the proxied call presents it', async (t) => {
  const stack = await startStack(t, {
    configYaml: (emulator) =>
      [
        'compat:',
        '  agentIdSidecar: true',
        'identities:',
        '  mi:',
        '    managedIdentity: {}',
        '    protocolScheme: MTLS_POP',
        'downstreamApis:',
        '  demo:',
        `    baseUrl: ${emulator.resourceUrl}`,
        '    scopes: [api://credential-sidecar-demo/.default]',
        '',
      ].join('\n'),
  })
  const header = await json(await plain(`${stack.url}/AuthorizationHeaderUnauthenticated/demo`))
  assert.match(header.authorizationHeader, /^mtls_pop /)
  assert.ok(header.bindingCertificate['x5t#S256'])
  assert.match(header.bindingCertificate.certificate, /BEGIN CERTIFICATE/)
  assert.match(header.bindingCertificate.private_key, /BEGIN PRIVATE KEY/)
  const res = await plain(
    `${stack.url}/DownstreamApiUnauthenticated/demo?optionsOverride.RelativePath=api/whoami`,
    { method: 'POST' },
  )
  const body = await json(res)
  assert.equal(body.statusCode, 200, body.content)
  const content = JSON.parse(body.content)
  assert.equal(content.scheme, 'mtls_pop')
  assert.deepEqual(content.cnf, { 'x5t#S256': header.bindingCertificate['x5t#S256'] })
})

test('DownstreamApiUnauthenticated holds at most 8 MiB: a larger caller body is 413, a larger resource answer 502, before either is read whole', async (t) => {
  const limit = 8 * 1024 * 1024
  let sent = 0
  const server = createServer((req, res) => {
    req.resume()
    // Chunked, no length: the sidecar can only find out by reading; it must stop at the bound.
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    const chunk = Buffer.alloc(64 * 1024, 'x')
    const pump = (): void => {
      while (sent < 64 * 1024 * 1024) {
        sent += chunk.length
        if (!res.write(chunk)) return void res.once('drain', pump)
      }
      res.end()
    }
    res.on('close', () => res.destroy())
    pump()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const stack = await startStack(t, {
    configYaml: () => agentIdYaml(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
  })
  const huge = await plain(`${stack.url}/DownstreamApiUnauthenticated/arm`, { method: 'POST' })
  assert.equal(huge.status, 502)
  assert.equal(huge.headers.get('content-type'), 'application/problem+json')
  assert.match((await json(huge)).detail, /larger than 8388608 bytes/)
  assert.ok(sent < 32 * 1024 * 1024, `the sidecar stopped reading (${sent} bytes sent)`)

  const tooBig = await plain(
    `${stack.url}/DownstreamApiUnauthenticated/arm?optionsOverride.HttpMethod=Post`,
    {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: Buffer.alloc(limit + 1, 'y'),
    },
  )
  assert.equal(tooBig.status, 413)
  assert.equal(tooBig.headers.get('content-type'), 'application/problem+json')
})
