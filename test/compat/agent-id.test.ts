import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
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
    res.writeHead(201, { 'content-type': 'application/json', 'x-resource': 'yes' })
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

test('AgentID routes keep every caller check but Metadata, and refuse what they cannot honour', async (t) => {
  const resource = await startEchoResource(t)
  const secretFile = join(mkdtempSync(join(tmpdir(), 'sidecar-secret-')), 'identity-header')
  writeFileSync(secretFile, 'agent-id-secret', { mode: 0o600 })
  const stack = await startStack(t, {
    configYaml: () => `callers:\n  secretFile: ${secretFile}\n${agentIdYaml(resource.url)}`,
  })
  const url = `${stack.url}/AuthorizationHeaderUnauthenticated/arm`
  const secret = { 'X-IDENTITY-HEADER': 'agent-id-secret' }
  assert.equal((await plain(url, { headers: secret })).status, 200)
  assert.equal((await plain(url)).status, 401, 'the caller secret still applies')
  for (const header of ['X-Forwarded-For', 'Forwarded', 'X-Real-IP', 'X-Forwarded-Host']) {
    assert.equal((await plain(url, { headers: { ...secret, [header]: '10.0.0.1' } })).status, 403, header)
  }
  const rebound = await request(url, { headers: { ...secret, Host: 'evil.example' } })
  assert.equal(rebound.statusCode, 403, 'DNS rebinding')
  await rebound.body.dump()
  for (const query of [
    'optionsOverride.BaseUrl=https://evil.example',
    'AgentIdentity=11111111-1111-1111-1111-111111111111',
    'optionsOverride.AcquireTokenOptions.Tenant=contoso.onmicrosoft.com',
    'optionsOverride.RequestAppToken=false',
    'optionsOverride.Scopes=User.Read',
  ]) {
    const res = await plain(`${url}?${query}`, { headers: secret })
    assert.equal(res.status, 400, query)
    assert.equal((await json(res)).error, 'invalid_request')
  }
  const unknown = await plain(`${stack.url}/AuthorizationHeaderUnauthenticated/nope`, { headers: secret })
  assert.equal(unknown.status, 400)
  assert.match((await json(unknown)).error_description, /Not able to resolve 'nope'/)
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
  assert.deepEqual(body.headers['x-resource'], ['yes'])
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
