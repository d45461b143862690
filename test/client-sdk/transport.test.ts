import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, connect, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'
import { SidecarClient, SidecarClientError } from '../../client-sdk/src/index.ts'
import { startStack } from '../support/stack.ts'
import { startHttpServer, tokenJson, tokenRouteRequests } from './support.ts'

const arm = 'https://management.azure.com/.default'

/** A TCP server on 127.0.0.1:0 that counts connections and lets `onConnection` decide their fate. */
async function startTcpServer(t: TestContext, onConnection: (socket: Socket, n: number) => void) {
  let connections = 0
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    onConnection(socket, ++connections)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    for (const s of sockets) s.destroy()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => connections,
  }
}

test('a dropped connection is retried once and the caller gets the token', async (t) => {
  const stack = await startStack(t)
  const daemonPort = Number(new URL(stack.url).port)
  const proxy = await startTcpServer(t, (socket, n) => {
    if (n === 1) {
      socket.destroy() // as a sidecar restarting, or an idle keep-alive socket it closed
      return
    }
    const upstream = connect(daemonPort, '127.0.0.1')
    socket.pipe(upstream).pipe(socket)
    socket.on('error', () => upstream.destroy())
    upstream.on('error', () => socket.destroy())
  })
  const sidecar = new SidecarClient({ endpoint: proxy.url, env: {} })
  t.after(() => sidecar.close())
  const token = await sidecar.getToken(arm)
  assert.equal(token.tokenType, 'Bearer')
  assert.equal(proxy.connections(), 2)
  assert.equal(await tokenRouteRequests(stack), 1)
})

test('exactly two attempts when every connection is dropped, then connection_failed', async (t) => {
  const server = await startTcpServer(t, (socket) => socket.destroy())
  const sidecar = new SidecarClient({ endpoint: server.url, env: {} })
  t.after(() => sidecar.close())
  const error = await sidecar.getToken(arm).catch((e: unknown) => e)
  assert.ok(error instanceof SidecarClientError)
  assert.equal(error.code, 'connection_failed')
  assert.match(error.message, new RegExp(`Cannot reach the sidecar at ${server.url}`))
  assert.equal(server.connections(), 2)
})

test('a refused connection is connection_failed', async (t) => {
  // A port that was just free: listen, note it, close.
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as AddressInfo
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  const sidecar = new SidecarClient({ endpoint: `http://127.0.0.1:${port}`, env: {} })
  t.after(() => sidecar.close())
  await assert.rejects(sidecar.getToken(arm), { code: 'connection_failed', message: /ECONNREFUSED/ })
})

test('HTTP errors are not retried', async (t) => {
  let requests = 0
  const fake = await startHttpServer(t, (_req, res) => {
    requests++
    res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '5' })
    res.end(
      JSON.stringify({
        error: 'upstream_unavailable',
        error_description: 'IMDS keeps failing',
        correlation_id: 'c-1',
      }),
    )
  })
  const sidecar = new SidecarClient({ endpoint: fake.url, env: {} })
  t.after(() => sidecar.close())
  await assert.rejects(sidecar.getToken(arm), {
    code: 'upstream_unavailable',
    status: 503,
    correlationId: 'c-1',
    description: 'IMDS keeps failing',
  })
  assert.equal(requests, 1)
})

test('timeoutMs bounds every call', async (t) => {
  const hung = await startTcpServer(t, () => {}) // accepts, never answers
  const sidecar = new SidecarClient({ endpoint: hung.url, timeoutMs: 200, env: {} })
  t.after(() => sidecar.close())
  const started = Date.now()
  await assert.rejects(sidecar.getToken(arm), { code: 'timeout', message: /within 200 ms/ })
  assert.ok(Date.now() - started < 5000)
})

test('what is sent: Metadata, the secret, and the scope or resource query', async (t) => {
  const seen: { url: string; headers: Record<string, unknown> }[] = []
  const fake = await startHttpServer(t, (req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers })
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify(tokenJson()))
  })
  const sidecar = new SidecarClient({ endpoint: fake.url, secret: 'the-secret', identity: 'app', env: {} })
  t.after(() => sidecar.close())
  await sidecar.getToken(arm)
  await sidecar.getToken('https://vault.azure.net')
  assert.equal(seen[0]!.url, `/token?scope=${encodeURIComponent(arm)}&identity=app`)
  assert.equal(seen[1]!.url, `/token?resource=${encodeURIComponent('https://vault.azure.net')}&identity=app`)
  assert.equal(seen[0]!.headers['metadata'], 'true')
  assert.equal(seen[0]!.headers['x-identity-header'], 'the-secret')
})

test('malformed answers are invalid_response and never quote a key or token', async (t) => {
  const answers: [number, string][] = [
    [200, 'not json'],
    [200, JSON.stringify({ access_token: 'tok-123' })],
    [200, JSON.stringify(tokenJson({ token_type: 'PoP' }))],
    [200, JSON.stringify(tokenJson({ expires_on: '1763723456' }))],
    [
      200,
      JSON.stringify(
        tokenJson({
          token_type: 'mtls_pop',
          binding_certificate: {
            'x5t#S256': 'x',
            certificate: 'nope',
            not_after: 1,
            private_key: 'secret-key',
          },
        }),
      ),
    ],
    [
      200,
      JSON.stringify(
        tokenJson({
          token_type: 'mtls_pop',
          binding_certificate: {
            'x5t#S256': 'x',
            certificate: '-----BEGIN CERTIFICATE-----\n',
            not_after: 1,
            private_key: 'secret-key',
          },
        }),
      ),
    ],
    [500, '<html>oops</html>'],
    [502, JSON.stringify({ message: 'no error field' })],
  ]
  let i = 0
  const fake = await startHttpServer(t, (_req, res) => {
    const [status, body] = answers[i++]!
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(body)
  })
  const sidecar = new SidecarClient({ endpoint: fake.url, env: {} })
  t.after(() => sidecar.close())
  for (const [status, body] of answers) {
    const error = await sidecar.getToken(arm).catch((e: unknown) => e)
    assert.ok(error instanceof SidecarClientError, body)
    assert.equal(error.code, 'invalid_response', body)
    assert.doesNotMatch(error.message, /secret-key|tok-123|fake-access-token/)
    if (status !== 200) assert.equal(error.status, status)
  }
})
