import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FakeClock } from '../support/fake-clock.ts'
import { startStack, type Stack } from '../support/stack.ts'

const resource = 'https://management.azure.com'

/** One raw HTTP/1.1 exchange, so the test sees exactly the bytes on the wire. */
function rawGet(
  url: string,
  path: string,
  headers: string[],
): Promise<{ status: number; head: string[]; body: string }> {
  const { port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = connect({ port: Number(port), host: '127.0.0.1' })
    const chunks: Buffer[] = []
    socket.on('connect', () =>
      socket.write([`GET ${path} HTTP/1.1`, ...headers, 'Connection: close', '', ''].join('\r\n')),
    )
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', reject)
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      const [head = '', body = ''] = text.split('\r\n\r\n')
      const lines = head.split('\r\n')
      resolve({ status: Number(lines[0]?.slice(9, 12)), head: lines, body })
    })
  })
}

function standardHeaders(stack: Stack, extra: string[] = []): string[] {
  return [`Host: ${new URL(stack.url).host}`, 'Metadata: true', ...extra]
}

/** Everything but the Date header, which is the wall clock's. */
function comparable(answer: { status: number; head: string[]; body: string }) {
  return { ...answer, head: answer.head.filter((l) => !/^date:/i.test(l)) }
}

/** Serves `path` once from the hono app (an extra parameter the lane does not know, which hono ignores) and once from the lane. */
async function bothPaths(stack: Stack, path: string, headers: string[]) {
  const lane = stack.daemon.fastLane
  const before = lane.served
  const slow = await rawGet(stack.url, `${path}&ignored=1`, headers)
  assert.equal(lane.served, before, 'a parameter the lane does not know goes to hono')
  const fast = await rawGet(stack.url, path, headers)
  assert.equal(lane.served, before + 1, 'the fast lane answered the cache hit')
  return { slow: comparable(slow), fast: comparable(fast) }
}

test('fast lane answers cache hits with the same bytes and headers as the hono app (/token, IMDS, App Service)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-secret-'))
  const secretFile = join(dir, 'identity-header')
  writeFileSync(secretFile, 's3cr3t\n', { mode: 0o600 })
  // A fake clock: expires_in and not_before are then equal on both paths, so every byte must be.
  const clock = new FakeClock()
  const stack = await startStack(t, {
    clock,
    configYaml: () => `callers:\n  secretFile: ${secretFile}\nidentities:\n  mi:\n    managedIdentity: {}\n`,
  })
  const secret = 'X-IDENTITY-HEADER: s3cr3t'
  const first = await rawGet(stack.url, `/token?resource=${resource}`, standardHeaders(stack, [secret]))
  assert.equal(first.status, 200)
  assert.equal(stack.daemon.fastLane.served, 0, 'a miss goes to hono')

  for (const path of [
    `/token?resource=${resource}`,
    `/token?scope=${encodeURIComponent(`${resource}/.default`)}&identity=mi`,
    `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${resource}`,
    `/metadata/identity/oauth2/token/?api-version=2018-02-01&resource=${encodeURIComponent(`${resource}/`)}`,
    `/msi/token?api-version=2019-08-01&resource=${resource}`,
    `/msi/token/?resource=${resource}&api-version=2019-08-01`,
  ]) {
    const { slow, fast } = await bothPaths(stack, path, standardHeaders(stack, [secret]))
    assert.equal(fast.status, 200, path)
    assert.deepEqual(fast, slow, path)
    assert.ok(fast.head.includes('cache-control: no-store'), path)
  }
  // Time moves on: expires_in follows the clock on both paths.
  await clock.advance(61_000)
  const { slow, fast } = await bothPaths(
    stack,
    `/token?resource=${resource}`,
    standardHeaders(stack, [secret]),
  )
  assert.deepEqual(fast, slow)
  assert.equal(JSON.parse(fast.body).expires_in, JSON.parse(first.body).expires_in - 61)
  // Two upstream calls: `resource/` (the trailing-slash IMDS form above) is a resource of its own,
  // sent upstream as given, as MSAL's IMDS source does; every other form is the first one's entry.
  assert.equal(stack.emulator.state.calls.count('imds.token'), 2)
})

test('fast lane: an mtls_pop answer carries the same binding certificate as the hono app', async (t) => {
  const stack = await startStack(t, {
    configYaml: () => 'identities:\n  pop:\n    managedIdentity: {}\n    protocolScheme: MTLS_POP\n',
  })
  const path = `/token?resource=${resource}`
  assert.equal((await rawGet(stack.url, path, standardHeaders(stack))).status, 200)
  const { slow, fast } = await bothPaths(stack, path, standardHeaders(stack))
  const mask = (a: typeof fast) => ({ ...a, body: a.body.replace(/"expires_in":\d+/, '"expires_in":0') })
  assert.deepEqual(mask(fast), mask(slow))
  const body = JSON.parse(fast.body)
  assert.equal(body.token_type, 'mtls_pop')
  assert.match(body.binding_certificate.certificate, /BEGIN CERTIFICATE/)
  assert.match(body.binding_certificate.private_key, /BEGIN PRIVATE KEY/)
})

test('fast lane leaves refusals, unknown parameters, CAE requests, refreshes and draining to the hono app', async (t) => {
  const clock = new FakeClock()
  const stack = await startStack(t, { clock })
  const lane = stack.daemon.fastLane
  const path = `/token?resource=${resource}`
  assert.equal((await rawGet(stack.url, path, standardHeaders(stack))).status, 200)
  const host = `Host: ${new URL(stack.url).host}`
  // status undefined: whatever hono answers (issue 10 changes some of these), never the lane.
  const cases: { path: string; headers: string[]; status?: number }[] = [
    { path, headers: [host], status: 400 }, // no Metadata
    { path, headers: [host, 'Metadata: false'], status: 400 },
    { path, headers: ['Host: evil.example', 'Metadata: true'], status: 403 },
    { path, headers: [host, host, 'Metadata: true'], status: 403 }, // two Host headers
    { path, headers: [...standardHeaders(stack), 'X-Forwarded-For: 10.0.0.1'], status: 403 },
    { path: `${path}&identity=nobody`, headers: standardHeaders(stack), status: 400 },
    { path: `${path}&resource=${resource}`, headers: standardHeaders(stack), status: 400 },
    { path: `${path}&scope=${resource}/.default`, headers: standardHeaders(stack), status: 400 },
    { path: `/token?resource=${resource}%0a`, headers: standardHeaders(stack) },
    { path: '/msi/token?api-version=2019-08-01&resource=x', headers: standardHeaders(stack), status: 404 },
    {
      path: `/metadata/identity/oauth2/token?resource=${resource}`,
      headers: standardHeaders(stack),
      status: 400,
    },
    { path: `${path}&claims=e30`, headers: standardHeaders(stack) },
    { path: `${path}&token_sha256_to_refresh=00`, headers: standardHeaders(stack) },
  ]
  for (const c of cases) {
    const before = lane.served
    const answer = await rawGet(stack.url, c.path, c.headers)
    if (c.status !== undefined) assert.equal(answer.status, c.status, `${c.path} ${c.headers.join(' | ')}`)
    assert.equal(lane.served, before, `${c.path} ${c.headers.join(' | ')} is not the lane's`)
    if (answer.status >= 400)
      assert.ok(JSON.parse(answer.body).correlation_id, 'errors carry a correlation id')
  }

  // Due for refresh: hono's path starts the refresh (and serves the still-valid token meanwhile).
  const cached = JSON.parse((await rawGet(stack.url, path, standardHeaders(stack))).body)
  await clock.advance((cached.refresh_on + 1) * 1000 - clock.now())
  const before = lane.served
  assert.equal((await rawGet(stack.url, path, standardHeaders(stack))).status, 200)
  assert.equal(lane.served, before, 'a refresh due is not a fast-lane hit')
  const calls = stack.emulator.state.calls.count('imds.token')
  await clock.advance(0)
  assert.ok(calls >= 2, 'the refresh went upstream')

  // Draining: hono answers 503.
  void stack.daemon.shutdown(5000)
  const draining = await rawGet(stack.url, path, standardHeaders(stack))
  assert.equal(draining.status, 503)
  assert.equal(lane.served, before)
})

test('fast-lane hits count in /metrics exactly as hono-served hits do', async (t) => {
  const stack = await startStack(t)
  const path = `/token?resource=${resource}`
  for (let i = 0; i < 5; i++)
    assert.equal((await rawGet(stack.url, path, standardHeaders(stack))).status, 200)
  assert.equal((await rawGet(stack.url, `${path}&ignored=1`, standardHeaders(stack))).status, 200)
  assert.equal(stack.daemon.fastLane.served, 4)
  const metrics = await (await fetch(`${stack.url}/metrics`)).text()
  assert.match(metrics, /^credential_sidecar_requests_total\{route="\/token",status="200"\} 6$/m)
  assert.match(metrics, /^credential_sidecar_token_cache_events_total\{event="hit"\} 5$/m)
  assert.match(metrics, /^credential_sidecar_token_cache_events_total\{event="miss"\} 1$/m)
  // Counts accumulate across scrapes rather than restarting.
  await rawGet(stack.url, path, standardHeaders(stack))
  const again = await (await fetch(`${stack.url}/metrics`)).text()
  assert.match(again, /^credential_sidecar_requests_total\{route="\/token",status="200"\} 7$/m)
})

test('successful requests are logged at debug, failures at info with their correlation id', async (t) => {
  const stack = await startStack(t)
  const path = `/token?resource=${resource}`
  await rawGet(stack.url, path, standardHeaders(stack))
  await rawGet(stack.url, path, standardHeaders(stack))
  await rawGet(stack.url, path, [`Host: ${new URL(stack.url).host}`])
  const requests = stack.logs.records.filter((r) => r['msg'] === 'request')
  assert.deepEqual(
    requests.map((r) => [r['level'], r['status']]),
    [
      ['debug', 200],
      ['debug', 200],
      ['info', 400],
    ],
  )
  assert.equal(requests[0]?.['correlation_id'], undefined, 'no correlation id is made for a success')
  const failed = stack.logs.records.find((r) => r['msg'] === 'request failed')
  assert.ok(failed?.['correlation_id'])
  assert.equal(requests[2]?.['correlation_id'], failed?.['correlation_id'])
})

test("with callers.allow the fast lane serves an allowed connection's hits; the rest go to the app", async (t) => {
  const uid = process.getuid?.() ?? 0
  const stack = await startStack(t, {
    configYaml: (emulator) =>
      `callers:\n  allow:\n    - uid: ${uid}\n      identities: [mi]\nidentities:\n  mi:\n    managedIdentity: {}\n  other:\n    managedIdentity:\n      userAssignedClientId: "${emulator.state.managedIdentities[1]!.clientId}"\n`,
  })
  const path = `/token?resource=${resource}`
  for (let i = 0; i < 3; i++)
    assert.equal((await rawGet(stack.url, path, standardHeaders(stack))).status, 200)
  assert.equal(stack.daemon.fastLane.served, 2, "the first was a miss; the hits were the lane's")
  // Not listed for this uid: refused by the app (403), never by the lane.
  assert.equal((await rawGet(stack.url, `${path}&identity=other`, standardHeaders(stack))).status, 403)
  assert.equal(stack.daemon.fastLane.served, 2)
})

test('fast lane: an IMDS answer keeps a token nbf that falls in the second the answer is first built', async (t) => {
  const clock = new FakeClock()
  const stack = await startStack(t, { clock })
  // A token whose nbf is "now" (an issuer that does not back-date it): not_before is that nbf for
  // the token's life, never the moving "now" the IMDS shape uses for a token without one.
  const nbf = Math.floor(clock.now() / 1000)
  const payload = Buffer.from(JSON.stringify({ nbf, exp: nbf + 3600 })).toString('base64url')
  stack.emulator.state.faults.script('imds.token', [
    {
      status: 200,
      body: {
        access_token: `eyJhbGciOiJub25lIn0.${payload}.sig`,
        expires_in: '3600',
        token_type: 'Bearer',
        resource,
      },
    },
  ])
  assert.equal((await rawGet(stack.url, `/token?resource=${resource}`, standardHeaders(stack))).status, 200)
  const path = `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${resource}`
  const first = await bothPaths(stack, path, standardHeaders(stack))
  assert.equal(JSON.parse(first.fast.body).not_before, String(nbf))
  await clock.advance(10_000)
  const { slow, fast } = await bothPaths(stack, path, standardHeaders(stack))
  assert.deepEqual(fast, slow)
  assert.equal(JSON.parse(fast.body).not_before, String(nbf))
})

/**
 * Writes `bytes` on a fresh connection and collects everything until the server closes it (or
 * `waitMs` passes: then `closed` is false).
 */
function rawExchange(url: string, bytes: string, waitMs = 3000): Promise<{ text: string; closed: boolean }> {
  const { port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = connect({ port: Number(port), host: '127.0.0.1' })
    const chunks: Buffer[] = []
    const timer = setTimeout(() => {
      socket.destroy()
      resolve({ text: Buffer.concat(chunks).toString('utf8'), closed: false })
    }, waitMs)
    socket.on('connect', () => socket.write(bytes))
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', reject)
    socket.on('close', () => {
      clearTimeout(timer)
      resolve({ text: Buffer.concat(chunks).toString('utf8'), closed: true })
    })
  })
}

test('a GET that carries a body is answered 400 and the connection closed, on a cache hit too (RFC 9112)', async (t) => {
  const stack = await startStack(t)
  const lane = stack.daemon.fastLane
  const path = `/token?resource=${resource}`
  assert.equal((await rawGet(stack.url, path, standardHeaders(stack))).status, 200)
  const head = (extra: string[]) =>
    [`GET ${path} HTTP/1.1`, ...standardHeaders(stack), ...extra, '', ''].join('\r\n')
  const cases = [
    // What the probe sent: an unknown coding and a chunk size that is not hex.
    head(['Transfer-Encoding: xchunked']) + 'zz\r\nhello\r\n0\r\n\r\n',
    head(['Transfer-Encoding: chunked']) + 'zz\r\nhello\r\n0\r\n\r\n',
    head(['Transfer-Encoding: chunked']) + '5\r\nhello\r\n0\r\n\r\n',
    head(['Content-Length: 5']) + 'hello',
    // A second request hidden in the body must never be answered.
    head([`Content-Length: ${`GET ${path} HTTP/1.1\r\n\r\n`.length}`]) + `GET ${path} HTTP/1.1\r\n\r\n`,
  ]
  for (const bytes of cases) {
    const before = lane.served
    const { text, closed } = await rawExchange(stack.url, bytes)
    const label = JSON.stringify(bytes.split('\r\n\r\n')[0]?.split('\r\n').at(-1))
    assert.ok(closed, `${label}: the connection is closed`)
    assert.match(text, /^HTTP\/1\.1 400 /, label)
    assert.equal(text.match(/HTTP\/1\.1 /g)?.length, 1, `${label}: exactly one answer`)
    assert.equal(lane.served, before, `${label}: not the lane's`)
  }
  // Content-Length: 0 is no body: the lane serves it.
  const before = lane.served
  const { text } = await rawExchange(stack.url, head(['Content-Length: 0', 'Connection: close']))
  assert.match(text, /^HTTP\/1\.1 200 /)
  assert.equal(lane.served, before + 1)
})

test('fast lane: Host 169.254.169.254 (a redirected IMDS request) is served on the IMDS route only', async (t) => {
  const stack = await startStack(t)
  const lane = stack.daemon.fastLane
  const imds = `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${resource}`
  assert.equal((await rawGet(stack.url, imds, standardHeaders(stack))).status, 200)
  for (const host of ['169.254.169.254', '169.254.169.254:80']) {
    const { slow, fast } = await bothPaths(stack, imds, [`Host: ${host}`, 'Metadata: true'])
    assert.equal(fast.status, 200, host)
    assert.deepEqual(
      { ...fast, body: fast.body.replace(/"(expires_in|ext_expires_in|not_before)":"\d+"/g, '') },
      { ...slow, body: slow.body.replace(/"(expires_in|ext_expires_in|not_before)":"\d+"/g, '') },
    )
  }
  for (const [path, host] of [
    [imds, '169.254.169.254:8080'],
    [`/token?resource=${resource}`, '169.254.169.254'],
    [`/token?resource=${resource}`, '169.254.169.254:80'],
  ] as const) {
    const before = lane.served
    const answer = await rawGet(stack.url, path, [`Host: ${host}`, 'Metadata: true'])
    assert.equal(answer.status, 403, `${path} Host: ${host}`)
    assert.equal(lane.served, before)
  }
  // The IMDS address does not lift the Metadata demand.
  assert.equal((await rawGet(stack.url, imds, ['Host: 169.254.169.254'])).status, 400)
})
