import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import { decodeJwt } from 'jose'
import { json, startStack, type Stack } from '../support/stack.ts'

/** What the resource server saw of one request. */
interface Seen {
  method: string
  url: string
  headers: IncomingMessage['headers']
  body: Buffer
}

/**
 * A tiny resource server on 127.0.0.1:0 that records every request. `/echo…` answers what it saw;
 * `/hang` never answers; `/redirect` a 302 to `location`; `/big` streams `bigSize` bytes; `/status/N` answers N;
 * `unauthorizedLeft` makes the next N requests 401.
 */
async function startResource(t: TestContext) {
  const seen: Seen[] = []
  const state = { unauthorizedLeft: 0, location: 'http://127.0.0.1:9/elsewhere', bigSize: 3 * 1024 * 1024 }
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const body = Buffer.concat(chunks)
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body })
    const path = (req.url ?? '').replace(/^\/base/, '')
    if (state.unauthorizedLeft > 0) {
      state.unauthorizedLeft--
      res.writeHead(401, {
        'www-authenticate': 'Bearer error="invalid_token"',
        'content-type': 'application/json',
      })
      return void res.end('{"error":"invalid_token"}')
    }
    if (path.startsWith('/hang')) return // never answers
    if (path.startsWith('/redirect')) {
      res.writeHead(302, { location: state.location })
      return void res.end()
    }
    if (path.startsWith('/status/')) {
      res.writeHead(Number(path.slice('/status/'.length)), { 'x-resource': 'yes' })
      return void res.end()
    }
    if (path.startsWith('/big')) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      const chunk = Buffer.alloc(64 * 1024, 7)
      for (let sent = 0; sent < state.bigSize; sent += chunk.length) {
        if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve))
      }
      return void res.end()
    }
    res.writeHead(201, {
      'content-type': 'application/json',
      'x-resource': 'yes',
      'set-cookie': 'session=from-resource; HttpOnly',
      connection: 'x-hop',
      'x-hop': 'should-not-pass',
    })
    res.end(
      JSON.stringify({
        method: req.method,
        url: req.url,
        headers: req.headers,
        bodyLength: body.length,
        body: body.length <= 1024 ? body.toString('utf8') : undefined,
      }),
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  )
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, state }
}

/** Raw HTTP/1.1 client: sends headers fetch and undici refuse (Connection, Keep-Alive, Cookie) and any request target. */
function send(
  stack: Pick<Stack, 'url'>,
  path: string,
  options: { method?: string; headers?: OutgoingHttpHeaders; body?: Buffer | string } = {},
): Promise<{ status: number; headers: IncomingMessage['headers']; body: Buffer }> {
  const { port } = new URL(stack.url)
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        headers: { host: `127.0.0.1:${port}`, metadata: 'true', ...options.headers },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        )
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(options.body)
  })
}

const scope = 'https://management.azure.com/.default'

async function proxyStack(t: TestContext, baseUrl: string) {
  return startStack(t, {
    configYaml: () =>
      [
        'identities:',
        '  mi:',
        '    managedIdentity: {}',
        'downstreamApis:',
        '  api:',
        `    baseUrl: ${baseUrl}`,
        '    identity: mi',
        `    scopes: ["${scope}"]`,
        '',
      ].join('\n'),
  })
}

test('forwards method, path, query and body; sets Authorization; drops caller credentials and hop-by-hop headers', async (t) => {
  const resource = await startResource(t)
  const stack = await proxyStack(t, `${resource.url}/base`)
  const res = await send(stack, '/downstream/api/echo/items?a=1&b=%20c', {
    method: 'POST',
    headers: {
      authorization: 'Bearer caller-own-token',
      cookie: 'caller=1',
      connection: 'keep-alive, x-custom',
      'x-custom': 'listed-in-connection',
      'keep-alive': 'timeout=5',
      te: 'trailers',
      'proxy-authorization': 'Basic eDp5',
      'x-keep': 'kept',
      'content-type': 'text/plain',
    },
    body: 'hello resource',
  })
  assert.equal(res.status, 201)
  assert.equal(res.headers['x-resource'], 'yes')
  assert.equal(res.headers['set-cookie'], undefined, 'a session opened with the sidecar token stays out')
  assert.equal(res.headers['x-hop'], undefined, 'a header the resource listed in Connection is hop-by-hop')
  assert.equal(res.headers['cache-control'], 'no-store')

  assert.equal(resource.seen.length, 1)
  const seen = resource.seen[0]!
  assert.equal(seen.method, 'POST')
  assert.equal(seen.url, '/base/echo/items?a=1&b=%20c')
  assert.equal(seen.body.toString(), 'hello resource')
  assert.equal(seen.headers['x-keep'], 'kept')
  assert.equal(seen.headers['content-type'], 'text/plain')
  assert.equal(seen.headers['host'], new URL(resource.url).host)
  for (const name of ['cookie', 'x-custom', 'keep-alive', 'te', 'proxy-authorization', 'metadata']) {
    assert.equal(seen.headers[name], undefined, name)
  }
  // Forwarding headers are refused outright by the caller guard (a relayed request is not local).
  for (const [name, value] of [
    ['forwarded', 'for=1.2.3.4'],
    ['x-forwarded-host', 'evil.example'],
  ]) {
    const refused = await send(stack, '/downstream/api/echo/items', { headers: { [name as string]: value } })
    assert.equal(refused.status, 403, name)
  }
  assert.equal(resource.seen.length, 1)
  const served = await json(await stack.get(`/token?scope=${scope}`))
  assert.equal(seen.headers['authorization'], `Bearer ${served.access_token}`)
  assert.equal(decodeJwt(served.access_token).aud, 'https://management.azure.com')
  assert.doesNotMatch(stack.logs.text, new RegExp(served.access_token.split('.')[2]))
})

test('the base path alone, a trailing slash and other methods are forwarded as given', async (t) => {
  const resource = await startResource(t)
  const stack = await proxyStack(t, `${resource.url}/base`)
  assert.equal((await send(stack, '/downstream/api')).status, 201)
  assert.equal((await send(stack, '/downstream/api/')).status, 201)
  assert.equal((await send(stack, '/downstream/api/echo', { method: 'DELETE' })).status, 201)
  assert.equal((await send(stack, '/downstream/api/status/204', { method: 'PATCH', body: '{}' })).status, 204)
  const head = await send(stack, '/downstream/api/echo', { method: 'HEAD' })
  assert.equal(head.status, 201)
  assert.equal(head.body.length, 0)
  assert.deepEqual(
    resource.seen.map((s) => `${s.method} ${s.url}`),
    ['GET /base', 'GET /base/', 'DELETE /base/echo', 'PATCH /base/status/204', 'HEAD /base/echo'],
  )
})

test('large bodies stream both ways', async (t) => {
  const resource = await startResource(t)
  const stack = await proxyStack(t, resource.url)
  const upload = Buffer.alloc(5 * 1024 * 1024, 1)
  const up = await send(stack, '/downstream/api/echo', { method: 'PUT', body: upload })
  assert.equal(up.status, 201)
  assert.equal(JSON.parse(up.body.toString()).bodyLength, upload.length)
  const down = await send(stack, '/downstream/api/big')
  assert.equal(down.status, 200)
  assert.equal(down.body.length, resource.state.bigSize)
})

test('bodies stream: neither side waits for the other to finish', async (t) => {
  // The resource answers with a first chunk as soon as it has 1.5 MiB of the upload, and finishes
  // only when told to; the caller finishes its upload only after it has read that first chunk.
  let finish: () => void = () => {}
  const finished = new Promise<void>((resolve) => (finish = resolve))
  const server = createServer((req, res) => {
    let received = 0
    let answered = false
    req.on('data', (chunk: Buffer) => {
      received += chunk.length
      if (!answered && received >= 1.5 * 1024 * 1024) {
        answered = true
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.write('first;')
      }
    })
    req.on('end', () => void finished.then(() => res.end(`received=${received}`)))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))))
  const stack = await proxyStack(t, `http://127.0.0.1:${(server.address() as AddressInfo).port}`)

  const { port } = new URL(stack.url)
  const text = await new Promise<string>((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      path: '/downstream/api/upload',
      method: 'POST',
      headers: { metadata: 'true', 'transfer-encoding': 'chunked' },
      agent: false,
    })
    req.on('error', reject)
    req.on('response', (res) => {
      let all = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        all += chunk
        if (all === 'first;') {
          req.end(Buffer.alloc(1000, 4)) // the rest of the upload, only now
          finish()
        }
      })
      res.on('end', () => resolve(all))
    })
    req.write(Buffer.alloc(2 * 1024 * 1024, 3))
  })
  assert.equal(text, `first;received=${2 * 1024 * 1024 + 1000}`)
})

test('redirects are passed back as they are, never followed', async (t) => {
  const resource = await startResource(t)
  const attacker = await startResource(t)
  resource.state.location = `${attacker.url}/steal`
  const stack = await proxyStack(t, resource.url)
  const res = await send(stack, '/downstream/api/redirect')
  assert.equal(res.status, 302)
  assert.equal(res.headers['location'], `${attacker.url}/steal`)
  assert.equal(resource.seen.length, 1)
  assert.equal(attacker.seen.length, 0)
})

test('a 401 from the resource: one retry with a freshly acquired token, body replayed', async (t) => {
  const resource = await startResource(t)
  const stack = await proxyStack(t, resource.url)
  resource.state.unauthorizedLeft = 1
  const res = await send(stack, '/downstream/api/echo', { method: 'POST', body: 'replay me' })
  assert.equal(res.status, 201)
  assert.equal(resource.seen.length, 2)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 2)
  const [first, second] = resource.seen
  assert.notEqual(first!.headers['authorization'], second!.headers['authorization'], 'a fresh token')
  assert.equal(second!.body.toString(), 'replay me')

  // Only once: a resource that keeps refusing gets its 401 passed back.
  resource.state.unauthorizedLeft = 5
  const refused = await send(stack, '/downstream/api/echo')
  assert.equal(refused.status, 401)
  assert.equal(refused.headers['www-authenticate'], 'Bearer error="invalid_token"')
  assert.equal(resource.seen.length, 4)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 3)
})

test('a 401 after a body too large to keep is passed back without a retry', async (t) => {
  const resource = await startResource(t)
  const stack = await proxyStack(t, resource.url)
  resource.state.unauthorizedLeft = 1
  const res = await send(stack, '/downstream/api/echo', {
    method: 'POST',
    body: Buffer.alloc(2 * 1024 * 1024, 2),
  })
  assert.equal(res.status, 401)
  assert.equal(resource.seen.length, 1)
  assert.equal(resource.seen[0]!.body.length, 2 * 1024 * 1024)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 1)
})

test('the caller cannot choose the host or leave the base path: refused before any request is made', async (t) => {
  const resource = await startResource(t)
  const attacker = await startResource(t)
  const stack = await proxyStack(t, `${resource.url}/base`)
  const a = new URL(attacker.url).host
  const attempts = [
    `/downstream/api/http://${a}/x`,
    `/downstream/api/https:%2f%2f${a}/x`,
    `/downstream/api/..%2f..%2fx`,
    `/downstream/api/%2e%2e/x`,
    `/downstream/api/%2E%2e/%2e%2E/x`,
    `/downstream/api/.%2e/x`,
    `/downstream/api/x/%2e/y`,
    `/downstream/api/x/..;/y`,
    `/downstream/api/%252e%252e/x`,
    `/downstream/api//${a}/x`,
    `/downstream/api/@${a}/x`,
    `/downstream/api/x%40${a}/y`,
    `/downstream/api/a%2fb`,
    `/downstream/api/a%2Fb`,
    `/downstream/api/a%5cb`,
    `/downstream/api/a\\b`,
    `/downstream/api/a%00b`,
    `/downstream/api/a%0d%0aHost:%20evil`,
    `/downstream/api/a%zzb`,
    `/downstream/api/../../x`,
    `/downstream/api/x/../../other/y`,
    `http://${a}/downstream/api/x`,
  ]
  for (const path of attempts) {
    const res = await send(stack, path)
    assert.ok(res.status === 400 || res.status === 404, `${path}: ${res.status}`)
    if (res.body.length > 0)
      assert.match(JSON.parse(res.body.toString()).error, /invalid_request|not_found/, path)
  }
  // A few exact answers, the rest only have to be refused.
  const refused = JSON.parse((await send(stack, '/downstream/api/%2e%2e/x')).body.toString())
  assert.equal(refused.error, 'invalid_request')
  assert.match(refused.error_description, /Refused downstream request/)
  assert.equal(resource.seen.length, 0, 'the resource saw nothing')
  assert.equal(attacker.seen.length, 0, 'the attacker saw nothing')
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0, 'no token was even fetched')
})

test('proxy routes pass the caller guard; unknown apis are 404', async (t) => {
  const resource = await startResource(t)
  const stack = await proxyStack(t, resource.url)
  const noMetadata = await send(stack, '/downstream/api/echo', { headers: { metadata: '' } })
  assert.equal(noMetadata.status, 400)
  assert.equal(
    JSON.parse(noMetadata.body.toString()).error_description,
    'Required metadata header not specified',
  )
  assert.equal(
    (await send(stack, '/downstream/api/echo', { headers: { 'x-forwarded-for': '10.0.0.1' } })).status,
    403,
  )
  assert.equal((await send(stack, '/downstream/api/echo', { headers: { host: 'evil.example' } })).status, 403)
  const unknown = await send(stack, '/downstream/nope/echo')
  assert.equal(unknown.status, 404)
  assert.equal(JSON.parse(unknown.body.toString()).error, 'not_found')
  assert.equal(resource.seen.length, 0)
})

test('a resource that cannot be reached is a 502 upstream_error', async (t) => {
  // Port 1 on loopback: nothing listens there, the connection is refused.
  const stack = await proxyStack(t, 'http://127.0.0.1:1')
  const res = await send(stack, '/downstream/api/x')
  assert.equal(res.status, 502)
  const body = JSON.parse(res.body.toString())
  assert.equal(body.error, 'upstream_error')
  assert.match(body.error_description, /Downstream API "api" \(http:\/\/127\.0\.0\.1:1\): connection failed/)
})

test('a resource that does not answer within upstream.timeoutMs is a 504 upstream_timeout', async (t) => {
  const resource = await startResource(t)
  const stack = await startStack(t, {
    upstreamYaml: '  timeoutMs: 300\n',
    configYaml: () =>
      [
        'identities:\n  mi:\n    managedIdentity: {}',
        `downstreamApis:\n  api:\n    baseUrl: ${resource.url}\n    scopes: ["${scope}"]`,
        '',
      ].join('\n'),
  })
  const started = Date.now()
  const res = await send(stack, '/downstream/api/hang')
  assert.equal(res.status, 504)
  assert.equal(JSON.parse(res.body.toString()).error, 'upstream_timeout')
  assert.ok(Date.now() - started < 5000)
  assert.equal(resource.seen.length, 1)
})

test('MTLS_POP identity: the proxy calls the resource over mTLS with the binding certificate; the key never leaves', async (t) => {
  const stack = await startStack(t, {
    configYaml: (emu) =>
      [
        'callers:',
        '  exposePrivateKey: false',
        'identities:',
        '  pop:',
        '    managedIdentity: {}',
        '    protocolScheme: MTLS_POP',
        'downstreamApis:',
        '  demo:',
        `    baseUrl: ${emu.resourceUrl}`,
        '    identity: pop',
        `    scopes: ["${emu.resourceAudience}/.default"]`,
        '',
      ].join('\n'),
  })
  const res = await send(stack, '/downstream/demo/api/whoami')
  assert.equal(res.status, 200, res.body.toString())
  const body = JSON.parse(res.body.toString())
  assert.equal(body.scheme, 'mtls_pop')
  const token = await json(await stack.get(`/token?scope=${stack.emulator.resourceAudience}/.default`))
  assert.equal(token.token_type, 'mtls_pop')
  assert.equal(body.cnf['x5t#S256'], token.binding_certificate['x5t#S256'])
  assert.equal(token.binding_certificate.private_key, undefined, 'exposePrivateKey: false')
  assert.doesNotMatch(stack.logs.text, /PRIVATE KEY/)

  // A 401 from the resource: a fresh PoP token, still over the same certificate.
  stack.emulator.state.faults.script('resource', [{ status: 401, body: { error: 'invalid_token' } }])
  const retried = await send(stack, '/downstream/demo/api/whoami')
  assert.equal(retried.status, 200)
  assert.equal(stack.emulator.state.calls.count('entra.mtls.token'), 2)
  assert.equal(stack.emulator.state.calls.count('imds.issuecredential'), 1)
})
