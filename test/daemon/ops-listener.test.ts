import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseConfig } from '../../sidecar/src/config/load.ts'
import { silentLogger } from '../../sidecar/src/core/log.ts'
import { Daemon } from '../../sidecar/src/daemon/daemon.ts'
import { startStack } from '../support/stack.ts'

const opsYaml = '  ops:\n    host: 127.0.0.1\n    port: 0\n'

test('listen.ops: a non-loopback host needs no allowNonLoopback; defaults 0.0.0.0:7781', () => {
  const config = parseConfig('listen:\n  ops:\n    host: 0.0.0.0\n    port: 9090\n', {
    source: 'c.yaml',
    env: {},
  })
  assert.deepEqual(config.listen.ops, { host: '0.0.0.0', port: 9090 })
  assert.deepEqual(parseConfig('listen:\n  ops: {}\n', { source: 'c.yaml', env: {} }).listen.ops, {
    host: '0.0.0.0',
    port: 7781,
  })
  assert.equal(parseConfig('', { source: 'c.yaml', env: {} }).listen.ops, undefined)
  assert.throws(
    () => parseConfig('listen:\n  ops:\n    token: true\n', { source: 'c.yaml', env: {} }),
    /c\.yaml:3:5 listen\.ops\.token: unknown key/,
  )
})

test('the ops listener serves health, readiness and metrics only; its URL is in the listening line', async (t) => {
  const stack = await startStack(t, { listenYaml: opsYaml })
  const ops = stack.daemon.opsUrl
  assert.ok(ops)
  assert.match(ops, /^http:\/\/127\.0\.0\.1:\d+$/)
  assert.notEqual(new URL(ops).port, '0')
  assert.notEqual(ops, stack.url)
  const listening = stack.logs.records.find((r) => r['msg'] === 'listening')
  assert.equal(listening?.['ops'], ops)
  assert.equal(listening?.['url'], stack.url)

  for (const path of ['/healthz', '/readyz', '/metrics']) {
    assert.equal((await fetch(`${ops}${path}`)).status, 200, path)
  }
  for (const path of [
    '/token?resource=https://management.azure.com',
    '/credential',
    '/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com',
    '/msi/token?api-version=2019-08-01&resource=https://management.azure.com',
    '/downstream/graph/v1.0/me',
  ]) {
    const res = await fetch(`${ops}${path}`, { headers: { Metadata: 'true' } })
    assert.equal(res.status, 404, path)
    const body = (await res.json()) as Record<string, unknown>
    assert.equal(body['error'], 'not_found')
    assert.equal(typeof body['error_description'], 'string')
    assert.match(String(body['correlation_id']), /^[0-9a-f-]{36}$/)
  }
  // The main listener still serves tokens.
  assert.equal((await stack.get('/token?resource=https://management.azure.com')).status, 200)
})

test('metrics: process defaults, request durations per route, build info, expiry gauges, zeroed counters', async (t) => {
  const stack = await startStack(t, {
    listenYaml: opsYaml,
    configYaml: () =>
      'identities:\n  mi:\n    managedIdentity: {}\n  pop:\n    managedIdentity: {}\n    protocolScheme: MTLS_POP\n',
  })
  const before = await (await fetch(`${stack.daemon.opsUrl}/metrics`)).text()
  for (const event of ['hit', 'miss', 'refresh', 'refresh_failure'])
    assert.match(
      before,
      new RegExp(`^credential_sidecar_token_cache_events_total\\{event="${event}"\\} 0$`, 'm'),
    )
  for (const identity of ['mi', 'pop'])
    assert.match(
      before,
      new RegExp(`^credential_sidecar_bearer_fallback_total\\{identity="${identity}"\\} 0$`, 'm'),
    )
  assert.match(before, /^process_cpu_user_seconds_total \d/m)
  assert.match(before, /^process_resident_memory_bytes \d/m)
  assert.match(before, /^nodejs_eventloop_lag_seconds \d/m)
  assert.match(
    before,
    new RegExp(
      `^credential_sidecar_build_info\\{version="0\\.1\\.0",node="${process.versions.node.replaceAll('.', '\\.')}"\\} 1$`,
      'm',
    ),
  )

  assert.equal((await stack.get('/token?resource=https://management.azure.com')).status, 200)
  assert.equal((await stack.get('/token?resource=https://management.azure.com&identity=pop')).status, 200)
  const after = await (await fetch(`${stack.daemon.opsUrl}/metrics`)).text()
  assert.match(after, /^credential_sidecar_request_duration_seconds_count\{route="\/token"\} 2$/m)
  assert.match(after, /^credential_sidecar_request_duration_seconds_bucket\{le="\+Inf",route="\/token"\} 2$/m)
  const now = Date.now() / 1000
  for (const identity of ['mi', 'pop']) {
    const expiry = new RegExp(
      `^credential_sidecar_token_expiry_timestamp_seconds\\{identity="${identity}",scope="https://management\\.azure\\.com/\\.default"\\} (\\d+)$`,
      'm',
    ).exec(after)
    assert.ok(expiry, identity)
    assert.ok(Number(expiry[1]) > now, `${identity} token expiry is in the future`)
  }
  const certificate =
    /^credential_sidecar_certificate_expiry_timestamp_seconds\{identity="pop"\} (\d+)$/m.exec(after)
  assert.ok(certificate && Number(certificate[1]) > now)
  assert.doesNotMatch(
    after,
    /certificate_expiry_timestamp_seconds\{identity="mi"\}/,
    'a Bearer identity has no certificate',
  )
  assert.match(after, /^credential_sidecar_token_cache_events_total\{event="miss"\} 2$/m)
})

test('probes and scrapes are logged at debug, not info; token requests stay at info', async (t) => {
  const stack = await startStack(t, { listenYaml: opsYaml })
  for (const base of [stack.url, stack.daemon.opsUrl]) {
    for (const path of ['/healthz', '/readyz', '/metrics'])
      assert.equal((await fetch(`${base}${path}`)).status, 200)
  }
  assert.equal((await stack.get('/token?resource=https://management.azure.com')).status, 200)
  const requests = stack.logs.records.filter((r) => r['msg'] === 'request')
  const probes = requests.filter((r) => ['/healthz', '/readyz', '/metrics'].includes(String(r['path'])))
  assert.equal(probes.length, 6)
  assert.ok(
    probes.every((r) => r['level'] === 'debug'),
    JSON.stringify(probes),
  )
  const token = requests.filter((r) => r['path'] === '/token')
  assert.equal(token.length, 1)
  // A successful request's access line is debug (issue 11: no log I/O per cached token); the token
  // fetched from upstream for it is logged at info.
  assert.equal(token[0]?.['level'], 'debug')
  assert.ok(
    stack.logs.records.some((r) => r['msg'] === 'token acquired from upstream' && r['level'] === 'info'),
  )
})

test('a start that fails at the ops listener releases the main port it had already taken', async (t) => {
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => taken.close(() => resolve())))
  const opsPort = (taken.address() as AddressInfo).port
  const mainPort = await freePort()
  const config = parseConfig(
    `listen:\n  host: 127.0.0.1\n  port: ${mainPort}\n  ops:\n    host: 127.0.0.1\n    port: ${opsPort}\n` +
      'upstream:\n  imdsEndpoint: http://127.0.0.1:9\nidentities:\n  mi:\n    managedIdentity: {}\n',
    { source: 'c.yaml', env: {} },
  )
  await assert.rejects(Daemon.start({ config, logger: silentLogger() }), { code: 'EADDRINUSE' })
  // The main listener was up before the ops one failed: its port is free again.
  const again = createServer()
  await new Promise<void>((resolve, reject) => {
    again.once('error', reject)
    again.listen(mainPort, '127.0.0.1', resolve)
  })
  await new Promise<void>((resolve) => again.close(() => resolve()))
})

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}
