import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { lstatSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { parseConfig } from '../../sidecar/src/config/load.ts'
import { Daemon } from '../../sidecar/src/daemon/daemon.ts'
import { createLogger } from '../../sidecar/src/core/log.ts'
import { FakeClock } from '../support/fake-clock.ts'
import { LogCapture } from '../support/runtime.ts'
import { json, startStack } from '../support/stack.ts'

/** Regression tests for the defects hostile testing found (issue 10, item 6). */

const mgmt = 'https://management.azure.com'

test('503 after exhausted retries carries Retry-After even when upstream sent none', async (t) => {
  const clock = new FakeClock(Date.now())
  const stack = await startStack(t, { clock })
  stack.emulator.state.faults.script('imds.token', Array(4).fill({ status: 500 }))
  let settled = false
  const pending = stack.get(`/token?resource=${mgmt}`).finally(() => void (settled = true))
  await clock.advanceUntil(() => settled, 250, 60_000)
  const res = await pending
  assert.equal(res.status, 503)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 4)
  assert.equal((await json(res)).error, 'upstream_unavailable')
  const retryAfter = Number(res.headers.get('retry-after'))
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After: ${res.headers.get('retry-after')}`)
})

test('503 after a connection failure (nothing listening upstream) carries Retry-After', async (t) => {
  const clock = new FakeClock(Date.now())
  // An IMDS endpoint where nothing listens: every attempt is a connection error.
  const closed = createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const port = (closed.address() as { port: number }).port
  await new Promise<void>((resolve) => closed.close(() => resolve()))
  const config = parseConfig(
    `listen:\n  host: 127.0.0.1\n  port: 0\nupstream:\n  imdsEndpoint: http://127.0.0.1:${port}\nidentities:\n  mi:\n    managedIdentity: {}\n`,
    { source: 'test.yaml', env: {} },
  )
  const daemon = await Daemon.start({
    config,
    clock,
    logger: createLogger({ level: 'silent', destination: new LogCapture() }),
  })
  t.after(() => daemon.shutdown(1000))
  let settled = false
  const pending = fetch(`${daemon.url}/token?resource=${mgmt}`, { headers: { Metadata: 'true' } }).finally(
    () => void (settled = true),
  )
  await clock.advanceUntil(() => settled, 250, 60_000)
  const res = await pending
  assert.equal(res.status, 503)
  assert.ok(Number(res.headers.get('retry-after')) >= 1)
})

test('Forwarded, X-Forwarded-Host and X-Real-IP are refused like X-Forwarded-For, on every token route', async (t) => {
  const stack = await startStack(t)
  const routes = [
    `/token?resource=${mgmt}`,
    `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${mgmt}`,
    '/credential',
  ]
  for (const header of ['Forwarded', 'X-Forwarded-Host', 'X-Real-IP', 'X-Forwarded-For']) {
    for (const route of routes) {
      const res = await stack.get(route, { [header]: header === 'Forwarded' ? 'for=10.0.0.1' : '10.0.0.1' })
      assert.equal(res.status, 403, `${header} on ${route}`)
      const body = await json(res)
      assert.equal(body.error, 'forbidden')
      assert.match(body.error_description, new RegExp(header, 'i'))
    }
  }
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0)
})

test('a resource with userinfo, a fragment, control characters or a malformed %-escape is refused locally', async (t) => {
  const stack = await startStack(t)
  const bad = [
    'https://user@management.azure.com',
    'https://user:pass@management.azure.com/',
    'https://management.azure.com#frag',
    'https://management.azure.com/x#',
    'https://management.azure.com/\u0001',
    'https://management.azure.com/\u007f',
    'https://management.azure.com/%zz',
    'https://management.azure.com/%4',
    'api://app%',
  ]
  for (const resource of bad) {
    for (const route of [
      `/token?resource=${encodeURIComponent(resource)}`,
      `/token?scope=${encodeURIComponent(`${resource}/.default`)}`,
      `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(resource)}`,
    ]) {
      const res = await stack.get(route)
      assert.equal(res.status, 400, `${JSON.stringify(resource)} via ${route}`)
      assert.equal((await json(res)).error, 'invalid_request')
    }
  }
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0, 'nothing reached upstream')
  for (const good of [
    '797f4846-ba00-4fd7-ba43-dac1f8f63013',
    'api://797f4846-ba00-4fd7-ba43-dac1f8f63013',
    'api://contoso.example/app%20one',
    'https://management.azure.com/',
  ]) {
    const res = await stack.get(`/token?resource=${encodeURIComponent(good)}`)
    assert.equal(res.status, 200, good)
  }
})

test('//metadata/identity/oauth2/token and //msi/token are served (msal-node and msal4j produce "//")', async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'sidecar-secret-')), 'identity-header')
  writeFileSync(file, 'hostile-secret', { mode: 0o600 })
  const stack = await startStack(t, {
    configYaml: () => `callers:\n  secretFile: ${file}\nidentities:\n  mi:\n    managedIdentity: {}\n`,
  })
  const imds = await request(
    `${stack.url}//metadata/identity/oauth2/token/?api-version=2018-02-01&resource=${mgmt}`,
    {
      headers: { Metadata: 'true', 'X-IDENTITY-HEADER': 'hostile-secret' },
    },
  )
  assert.equal(imds.statusCode, 200)
  assert.equal(((await imds.body.json()) as { token_type: string }).token_type, 'Bearer')
  const appService = await request(`${stack.url}//msi/token?api-version=2019-08-01&resource=${mgmt}`, {
    headers: { 'X-IDENTITY-HEADER': 'hostile-secret' },
  })
  assert.equal(appService.statusCode, 200)
  await appService.body.dump()
  // The guard still applies on the "//" spelling.
  const noSecret = await request(`${stack.url}//msi/token?api-version=2019-08-01&resource=${mgmt}`)
  assert.equal(noSecret.statusCode, 401)
  await noSecret.body.dump()
  // Other "//" paths are not collapsed.
  const other = await request(`${stack.url}//token?resource=${mgmt}`, { headers: { Metadata: 'true' } })
  assert.equal(other.statusCode, 404)
  await other.body.dump()
})

test("the emulator's IMDS answers the trailing-slash path @azure/identity uses", async (t) => {
  const stack = await startStack(t)
  const res = await fetch(
    `${stack.emulator.imdsUrl}/metadata/identity/oauth2/token/?api-version=2018-02-01&resource=${mgmt}`,
    {
      headers: { Metadata: 'true' },
    },
  )
  assert.equal(res.status, 200)
  assert.equal((await json(res)).token_type, 'Bearer')
})

function socketDir(): string {
  return mkdtempSync(join(tmpdir(), 'sidecar-sock-'))
}

async function startWithSocket(socketPath: string) {
  const config = parseConfig(
    `listen:\n  host: 127.0.0.1\n  port: 0\n  socket: ${socketPath}\nupstream:\n  imdsEndpoint: http://127.0.0.1:9\nidentities:\n  mi:\n    managedIdentity: {}\n`,
    { source: 'test.yaml', env: {} },
  )
  return Daemon.start({ config, logger: createLogger({ level: 'silent', destination: new LogCapture() }) })
}

test('listen.socket refuses to delete a regular file at its path', async () => {
  const path = join(socketDir(), 'sidecar.sock')
  writeFileSync(path, 'precious data')
  await assert.rejects(startWithSocket(path), /not a socket; refusing to delete it/)
  assert.equal(readFileSync(path, 'utf8'), 'precious data')
})

test('listen.socket refuses a socket another process listens on, and replaces a stale one', async (t) => {
  const dir = socketDir()
  const path = join(dir, 'sidecar.sock')
  const other = createServer((c) => c.end())
  await new Promise<void>((resolve) => other.listen(path, resolve))
  await assert.rejects(startWithSocket(path), /another process is listening/)
  assert.ok(lstatSync(path).isSocket(), 'the other process keeps its socket')
  // A stale socket: the file stays behind when its listener dies without unlinking it.
  const stale = join(dir, 'stale.sock')
  const { execFileSync } = await import('node:child_process')
  execFileSync(process.execPath, [
    '-e',
    `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.exit(0))`,
  ])
  assert.ok(lstatSync(stale).isSocket(), 'stale socket left behind')
  await new Promise<void>((resolve) => other.close(() => resolve()))
  const daemon = await startWithSocket(stale)
  t.after(() => daemon.shutdown(1000))
  assert.equal(statSync(stale).mode & 0o777, 0o660)
  assert.deepEqual(
    readdirSync(dir).filter((n) => n.startsWith('.')),
    [],
    'no temporary directory left behind',
  )
  const agent = new Agent({ connect: { socketPath: stale } })
  t.after(() => agent.close())
  const res = await request('http://localhost/healthz', { dispatcher: agent })
  assert.equal(res.statusCode, 200)
  await res.body.dump()
})

test('listen.socket: the socket is never reachable with a mode wider than 0660, and is removed on shutdown', async () => {
  const dir = socketDir()
  const path = join(dir, 'sidecar.sock')
  // Watch the directory while the daemon starts: whatever appears at the final name is already 0660.
  const seen: number[] = []
  const watcher = setInterval(() => {
    try {
      seen.push(lstatSync(path).mode & 0o777)
    } catch {
      // not there yet
    }
  }, 0)
  const previous = process.umask(0)
  let daemon: Daemon
  try {
    daemon = await startWithSocket(path)
  } finally {
    process.umask(previous)
  }
  await new Promise((resolve) => setTimeout(resolve, 20))
  clearInterval(watcher)
  assert.ok(seen.length > 0)
  assert.ok(
    seen.every((mode) => mode === 0o660),
    `modes seen: ${seen.map((m) => m.toString(8)).join(',')}`,
  )
  await daemon.shutdown(1000)
  assert.throws(() => lstatSync(path), /ENOENT/, 'our socket is removed on shutdown')
})
