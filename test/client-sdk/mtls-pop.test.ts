import { test } from 'node:test'
import assert from 'node:assert/strict'
import { decodeJwt } from 'jose'
import { request } from 'undici'
import { SidecarClient, SidecarClientError } from '../../client-sdk/src/index.ts'
import { startStack, type Stack } from '../support/stack.ts'
import { startHttpServer, tokenJson } from './support.ts'

const popIdentity = 'identities:\n  mi:\n    managedIdentity: {}\n    protocolScheme: MTLS_POP\n'
const demoScope = 'api://credential-sidecar-demo/.default'
// Taken before a daemon starts in this process: its HTTP server (@hono/node-server) replaces the
// global Response with a subclass of its own. An application without it sees the platform's, as the
// packaging test checks in a process of its own.
const PlatformResponse = globalThis.Response

function client(t: { after(fn: () => unknown): void }, stack: Stack, now?: () => number): SidecarClient {
  const sidecar = new SidecarClient({ endpoint: stack.url, env: {}, ...(now ? { now } : {}) })
  t.after(() => sidecar.close())
  return sidecar
}

async function whoami(sidecar: SidecarClient, stack: Stack, init: { forceRefresh?: boolean } = {}) {
  const res = await sidecar.fetch(`${stack.emulator.resourceUrl}/api/whoami`, {
    scope: demoScope,
    ca: stack.emulator.caPem,
    ...init,
  })
  return { status: res.status, body: (await res.json()) as Record<string, any> }
}

test('getToken of an MTLS_POP identity carries the binding certificate and its key', async (t) => {
  const stack = await startStack(t, { configYaml: () => popIdentity })
  const sidecar = client(t, stack)
  const token = await sidecar.getToken(demoScope)
  assert.equal(token.tokenType, 'mtls_pop')
  const binding = token.bindingCertificate
  assert.ok(binding)
  assert.equal((decodeJwt(token.token)['cnf'] as Record<string, string>)['x5t#S256'], binding.x5tS256)
  assert.match(binding.certificate, /^-----BEGIN CERTIFICATE-----/)
  assert.match(binding.privateKey ?? '', /^-----BEGIN PRIVATE KEY-----/)
  assert.ok(binding.notAfter > Date.now() && binding.notAfter % 1000 === 0)
})

test('fetch calls the demo resource with mtls_pop over the binding certificate', async (t) => {
  const stack = await startStack(t, { configYaml: () => popIdentity })
  const sidecar = client(t, stack)
  const { status, body } = await whoami(sidecar, stack)
  assert.equal(status, 200)
  assert.equal(body['scheme'], 'mtls_pop')
  const token = await sidecar.getToken(demoScope)
  assert.equal(body['cnf']['x5t#S256'], token.bindingCertificate?.x5tS256)
  assert.equal(body['appid'], stack.emulator.state.managedIdentities[0]!.clientId)

  // The caller's init passes through; its Authorization is replaced.
  const res = await sidecar.fetch(`${stack.emulator.resourceUrl}/api/whoami`, {
    scope: demoScope,
    ca: stack.emulator.caPem,
    method: 'POST',
    headers: { authorization: 'Bearer not-this-one', 'content-type': 'application/json' },
    body: JSON.stringify({ hello: 'world' }),
  })
  // The platform's Response (global fetch, the SDK's Agent as its dispatcher), not undici's.
  assert.ok(res instanceof PlatformResponse)
  assert.ok(res.headers instanceof Headers)
  assert.equal(res.status, 200)
  assert.equal(((await res.json()) as Record<string, unknown>)['scheme'], 'mtls_pop')
})

test('mtlsAgent presents the binding certificate for a request the caller makes itself', async (t) => {
  const stack = await startStack(t, { configYaml: () => popIdentity })
  const sidecar = client(t, stack)
  const token = await sidecar.getToken(demoScope)
  const agent = await sidecar.mtlsAgent({ scope: demoScope, ca: stack.emulator.caPem })
  assert.equal(await sidecar.mtlsAgent({ scope: demoScope, ca: stack.emulator.caPem }), agent, 'cached')
  const res = await request(`${stack.emulator.resourceUrl}/api/whoami`, {
    dispatcher: agent,
    headers: { authorization: `mtls_pop ${token.token}` },
  })
  assert.equal(res.statusCode, 200)
  assert.equal(((await res.body.json()) as Record<string, unknown>)['scheme'], 'mtls_pop')
})

test('after the certificate rotates the next call presents the new one and the old agent is closed', async (t) => {
  const stack = await startStack(t, { configYaml: () => popIdentity })
  let now = Date.now()
  const sidecar = client(t, stack, () => now)
  const first = await whoami(sidecar, stack)
  assert.equal(first.status, 200)
  const oldX5t = first.body['cnf']['x5t#S256'] as string
  const oldAgent = await sidecar.mtlsAgent({ scope: demoScope, ca: stack.emulator.caPem })

  // Force a rotation: Entra refuses the certificate once (invalid_client) on another resource's
  // token request; the daemon re-mints the binding and serves every later token over the new one.
  stack.emulator.state.faults.script('entra.mtls.token', [
    {
      status: 401,
      body: { error: 'invalid_client', error_description: 'AADSTS700027: certificate revoked' },
    },
  ])
  const other = (await (await stack.get('/token?resource=https://graph.microsoft.com')).json()) as Record<
    string,
    any
  >
  assert.equal(stack.emulator.state.calls.count('imds.issuecredential'), 2)
  assert.notEqual(other['binding_certificate']['x5t#S256'], oldX5t)

  // The SDK still serves its cached token (bound to the old, still valid, certificate)…
  const cached = await whoami(sidecar, stack)
  assert.equal(cached.status, 200)
  assert.equal(cached.body['cnf']['x5t#S256'], oldX5t)
  // …until its refresh_on, then the new token comes with the new certificate and a new Agent.
  now = (await sidecar.getToken(demoScope)).refreshAfterTimestamp
  const rotated = await whoami(sidecar, stack)
  assert.equal(rotated.status, 200)
  assert.equal(rotated.body['cnf']['x5t#S256'], other['binding_certificate']['x5t#S256'])
  const newAgent = await sidecar.mtlsAgent({ scope: demoScope, ca: stack.emulator.caPem })
  assert.notEqual(newAgent, oldAgent)
  assert.equal(oldAgent.closed, true, 'the old agent is closed once no scope uses it')
  assert.equal(newAgent.closed, false)
})

test('a Bearer identity has no agent, and a PoP token never goes over plain http', async (t) => {
  const stack = await startStack(t, {
    configYaml: () =>
      `defaultIdentity: pop\n${popIdentity}  pop:\n    managedIdentity: {}\n    protocolScheme: MTLS_POP\n  bearer:\n    managedIdentity: {}\n`,
  })
  const sidecar = client(t, stack)
  await assert.rejects(sidecar.mtlsAgent({ scope: demoScope, identity: 'bearer' }), {
    code: 'pop_requires_binding_certificate',
  })
  await assert.rejects(sidecar.fetch(`${stack.url}/healthz`, { scope: demoScope }), {
    code: 'invalid_argument',
  })
})

test('exposePrivateKey: false → fetch fails closed with private_key_not_exposed, nothing is sent', async (t) => {
  const stack = await startStack(t, {
    configYaml: () => `callers:\n  exposePrivateKey: false\n${popIdentity}`,
  })
  const sidecar = client(t, stack)
  const token = await sidecar.getToken(demoScope)
  assert.equal(token.tokenType, 'mtls_pop')
  assert.equal(token.bindingCertificate?.privateKey, undefined)
  const error = await whoami(sidecar, stack).catch((e: unknown) => e)
  assert.ok(error instanceof SidecarClientError)
  assert.equal(error.code, 'private_key_not_exposed')
  assert.ok(!error.message.includes(token.token))
  assert.equal(stack.emulator.state.calls.count('resource'), 0, 'the resource was never called')
  await assert.rejects(sidecar.mtlsAgent({ scope: demoScope }), { code: 'private_key_not_exposed' })
})

test('an mtls_pop answer without binding_certificate is refused, never sent as Bearer', async (t) => {
  // A sidecar that breaks the contract (a fake one: the real daemon fails closed itself).
  const fake = await startHttpServer(t, (_req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify(tokenJson({ token_type: 'mtls_pop' })))
  })
  const sidecar = new SidecarClient({ endpoint: fake.url, env: {} })
  t.after(() => sidecar.close())
  const seen: string[] = []
  const resource = await startHttpServer(t, (req, res) => {
    seen.push(req.headers.authorization ?? '')
    res.end('{}')
  })
  await assert.rejects(sidecar.fetch(resource.url.replace('http:', 'https:'), { scope: demoScope }), {
    code: 'pop_requires_binding_certificate',
  })
  assert.deepEqual(seen, [])
})
