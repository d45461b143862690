import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Emulator } from '../../sidecar/src/emulator/emulator.ts'
import { SocketTable } from '../../sidecar/src/http/callers/socket-table.ts'
import { startStack, type Stack, type StackOptions } from '../support/stack.ts'
import { cannotSpawnAsOtherUids, requestsAsUid, uids } from './as-uid.ts'
import { twoIdentitiesYaml } from './identities-yaml.ts'

const skip = cannotSpawnAsOtherUids()
const mgmt = 'https://management.azure.com'
const imds = `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(mgmt)}`

/** Two identities: `mi` (system-assigned) and `two` (a user-assigned one); nobody may use both, alice only mi. */
function allowYaml(emulator: Emulator, extra = ''): string {
  return [
    'callers:',
    '  allow:',
    `    - uid: ${uids.nobody}`,
    '      identities: [two, mi]',
    `    - uid: ${uids.alice}`,
    '      identities: [mi]',
    extra,
    ...twoIdentitiesYaml(emulator),
  ].join('\n')
}

async function allowStack(t: TestContext, options: StackOptions = {}): Promise<Stack> {
  return startStack(t, { configYaml: (emulator) => allowYaml(emulator), ...options })
}

function lookups(stack: Stack): Promise<number> {
  return stack.daemon.runtime.metrics.callerLookups
    .get()
    .then((m) => m.values.filter((v) => v.metricName?.endsWith('_count')).reduce((a, v) => a + v.value, 0))
}

async function refusals(stack: Stack): Promise<Record<string, number>> {
  const metric = await stack.daemon.runtime.metrics.callerRefusals.get()
  return Object.fromEntries(metric.values.map((v) => [`${v.labels.uid}/${v.labels.identity}`, v.value]))
}

test('TCP loopback (IPv4): each uid gets its identities and only those', { skip }, async (t) => {
  const stack = await allowStack(t)
  const url = (path: string) => `${stack.url}${path}`
  const [two, mi] = await requestsAsUid(uids.nobody, [
    url(`/token?resource=${mgmt}&identity=two`),
    url(`/token?resource=${mgmt}&identity=mi`),
  ])
  assert.equal(two!.status, 200, JSON.stringify(two!.body))
  assert.equal(two!.body.identity, 'two')
  assert.equal(mi!.status, 200)
  assert.equal(mi!.body.identity, 'mi')

  const [alicesMi, alicesTwo] = await requestsAsUid(uids.alice, [
    url(`/token?resource=${mgmt}`),
    url(`/token?resource=${mgmt}&identity=two`),
  ])
  assert.equal(alicesMi!.status, 200, 'the default identity is one alice may use')
  assert.equal(alicesMi!.body.identity, 'mi')
  assert.equal(alicesTwo!.status, 403, 'an allowed uid asking for an identity its entry does not list')
  assert.equal(alicesTwo!.body.error, 'forbidden')
  assert.match(alicesTwo!.body.error_description, /uid 64101 may not use identity "two".*"mi"/)
  assert.ok(alicesTwo!.body.correlation_id)

  const [mallory] = await requestsAsUid(uids.mallory, [url(`/token?resource=${mgmt}&identity=mi`)])
  assert.equal(mallory!.status, 403)
  assert.match(mallory!.body.error_description, /uid 64102 is not listed in callers\.allow/)

  // The test runner itself (root) has no entry either: root is not special.
  const own = await stack.get(`/token?resource=${mgmt}`)
  assert.equal(own.status, 403)
  assert.match(((await own.json()) as { error_description: string }).error_description, /uid 0 is not listed/)

  assert.deepEqual(await refusals(stack), { '64101/two': 1, '64102/none': 1, '0/none': 1 })
  // Only the allowed uids' requests reached upstream: one token per identity.
  assert.equal(stack.emulator.state.calls.count('imds.token'), 2)
})

test('compat routes serve the caller its first allowed identity', { skip }, async (t) => {
  const stack = await allowStack(t)
  const [nobody] = await requestsAsUid(uids.nobody, [`${stack.url}${imds}`])
  assert.equal(nobody!.status, 200, JSON.stringify(nobody!.body))
  assert.equal(
    nobody!.body.client_id,
    stack.emulator.state.managedIdentities[1]!.clientId,
    'two, listed first',
  )
  const [alice] = await requestsAsUid(uids.alice, [`${stack.url}${imds}`])
  assert.equal(alice!.status, 200)
  assert.equal(alice!.body.client_id, stack.emulator.state.managedIdentities[0]!.clientId, 'mi')
  // A selector naming an identity the caller may not use is refused, not served.
  const twoId = stack.emulator.state.managedIdentities[1]!.clientId
  const [aliceAsTwo] = await requestsAsUid(uids.alice, [`${stack.url}${imds}&client_id=${twoId}`])
  assert.equal(aliceAsTwo!.status, 403)
  const [mallory] = await requestsAsUid(uids.mallory, [`${stack.url}${imds}`])
  assert.equal(mallory!.status, 403)
})

test('App Service route with a secret: secret and uid must both pass', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-secret-'))
  const secretFile = join(dir, 'identity-header')
  writeFileSync(secretFile, 'callers-allow-secret\n', { mode: 0o600 })
  const stack = await startStack(t, {
    configYaml: (emulator) => allowYaml(emulator, `  secretFile: ${secretFile}`),
  })
  const msi = `${stack.url}/msi/token?api-version=2019-08-01&resource=${encodeURIComponent(mgmt)}`
  const withSecret = { 'X-IDENTITY-HEADER': 'callers-allow-secret' }
  const [served] = await requestsAsUid(uids.nobody, [msi], withSecret)
  assert.equal(served!.status, 200, JSON.stringify(served!.body))
  assert.equal(served!.body.client_id, stack.emulator.state.managedIdentities[1]!.clientId)
  const [noSecret] = await requestsAsUid(uids.nobody, [msi], {})
  assert.equal(noSecret!.status, 401, 'the secret is still demanded')
  const [wrongUid] = await requestsAsUid(uids.mallory, [msi], withSecret)
  assert.equal(wrongUid!.status, 403, 'knowing the secret is not enough')
  const [token] = await requestsAsUid(uids.mallory, [`${stack.url}/token?resource=${mgmt}`], {
    Metadata: 'true',
    ...withSecret,
  })
  assert.equal(token!.status, 403)
})

test('/credential and /downstream check the identity too', { skip }, async (t) => {
  const resource = createServer((_req, res) =>
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'),
  )
  await new Promise<void>((resolve) => resource.listen(0, '127.0.0.1', resolve))
  t.after(() => resource.close())
  const base = `http://127.0.0.1:${(resource.address() as AddressInfo).port}`
  const stack = await startStack(t, {
    configYaml: (emulator) =>
      allowYaml(emulator) +
      [
        'downstreamApis:',
        '  res:',
        `    baseUrl: ${base}`,
        '    identity: two',
        `    scopes: ["${mgmt}/.default"]`,
        '',
      ].join('\n'),
  })
  const [proxied] = await requestsAsUid(uids.nobody, [`${stack.url}/downstream/res/items`])
  assert.equal(proxied!.status, 200, JSON.stringify(proxied!.body))
  assert.deepEqual(proxied!.body, { ok: true })
  const [refused, credential] = await requestsAsUid(uids.alice, [
    `${stack.url}/downstream/res/items`,
    `${stack.url}/credential?identity=two`,
  ])
  assert.equal(refused!.status, 403)
  assert.match(refused!.body.error_description, /may not use identity "two"/)
  assert.equal(credential!.status, 403)
})

test('keep-alive: one lookup per connection; one log line per refused connection', { skip }, async (t) => {
  const stack = await allowStack(t)
  const before = await lookups(stack)
  const answers = await requestsAsUid(
    uids.nobody,
    [1, 2, 3].map(() => `${stack.url}/token?resource=${mgmt}`),
  )
  assert.deepEqual(
    answers.map((a) => a.status),
    [200, 200, 200],
  )
  assert.equal(new Set(answers.map((a) => a.localPort)).size, 1, 'the three requests shared one connection')
  assert.equal((await lookups(stack)) - before, 1)

  const refused = await requestsAsUid(
    uids.mallory,
    [1, 2, 3].map(() => `${stack.url}/token?resource=${mgmt}`),
  )
  assert.deepEqual(
    refused.map((a) => a.status),
    [403, 403, 403],
  )
  const lines = stack.logs.records.filter((r) => r['msg'] === 'caller refused by callers.allow')
  assert.equal(lines.length, 1, 'one line for the connection, not one per request')
  assert.equal(lines[0]!['uid'], uids.mallory)
  assert.equal(lines[0]!['reason'], 'caller_not_allowed')
  assert.ok(
    !stack.logs.records.some((r) => r['msg'] === 'request failed' && r['error'] === 'forbidden'),
    'no per-request error line for the refusals',
  )
  assert.deepEqual(await refusals(stack), { '64102/none': 3 }, 'every refused request is counted')
})

test('the fast lane serves cache hits to allowed connections, never to refused ones', { skip }, async (t) => {
  const stack = await allowStack(t)
  const token = (identity: string) => `${stack.url}/token?resource=${mgmt}&identity=${identity}`
  // Fill the cache (misses go to the hono app), then hits over one keep-alive connection each.
  const warm = await requestsAsUid(uids.nobody, [token('two'), token('mi'), `${stack.url}${imds}`])
  assert.deepEqual(
    warm.map((a) => a.status),
    [200, 200, 200],
  )
  const before = stack.daemon.fastLane.served
  const hits = await requestsAsUid(uids.nobody, [token('two'), token('two'), `${stack.url}${imds}`])
  assert.deepEqual(
    hits.map((a) => a.status),
    [200, 200, 200],
  )
  assert.equal(
    hits[2]!.body.client_id,
    stack.emulator.state.managedIdentities[1]!.clientId,
    'its first identity',
  )
  assert.equal(stack.daemon.fastLane.served - before, 3, 'all three hits written by the fast lane')

  // Cached, yet refused: alice may not use two, mallory nothing; the app refuses, logs and counts.
  const refused = [
    ...(await requestsAsUid(uids.alice, [
      token('two'),
      `${stack.url}${imds}&client_id=${stack.emulator.state.managedIdentities[1]!.clientId}`,
    ])),
    ...(await requestsAsUid(uids.mallory, [token('mi'), `${stack.url}${imds}`])),
  ]
  assert.deepEqual(
    refused.map((a) => a.status),
    [403, 403, 403, 403],
  )
  const [alicesMi] = await requestsAsUid(uids.alice, [`${stack.url}${imds}`])
  assert.equal(alicesMi!.body.client_id, stack.emulator.state.managedIdentities[0]!.clientId, 'alice: mi')
  assert.equal(stack.daemon.fastLane.served - before, 4, "only alice's allowed hit was the lane's")
  assert.deepEqual(await refusals(stack), { '64101/two': 2, '64102/none': 2 })
})

test('TCP loopback (IPv6): the same policy over ::1', { skip }, async (t) => {
  const stack = await allowStack(t, { listenHost: '"::1"' })
  assert.match(stack.url, /^http:\/\/\[::1\]:/)
  const [two] = await requestsAsUid(uids.nobody, [`${stack.url}/token?resource=${mgmt}&identity=two`])
  assert.equal(two!.status, 200, JSON.stringify(two!.body))
  const [alice] = await requestsAsUid(uids.alice, [`${stack.url}/token?resource=${mgmt}&identity=two`])
  assert.equal(alice!.status, 403)
  const [mallory] = await requestsAsUid(uids.mallory, [`${stack.url}${imds}`])
  assert.equal(mallory!.status, 403)
})

test(
  'dual stack: an AF_INET6 socket reaching the IPv4 listener as ::ffff:127.0.0.1 is matched',
  { skip },
  async (t) => {
    // Java's default (and any dual-stack client): the client's socket is AF_INET6 and connects to the
    // v4-mapped address, so it is listed in /proc/net/tcp6 while the sidecar's end is plain IPv4.
    const stack = await allowStack(t)
    assert.match(stack.url, /^http:\/\/127\.0\.0\.1:/)
    const viaV6 = { connectHost: '::ffff:127.0.0.1' }
    const [two] = await requestsAsUid(
      uids.nobody,
      [`${stack.url}/token?resource=${mgmt}&identity=two`],
      undefined,
      viaV6,
    )
    assert.equal(two!.status, 200, JSON.stringify(two!.body))
    assert.equal(two!.body.identity, 'two')
    assert.equal(two!.localAddress, '::ffff:127.0.0.1', 'the client socket was AF_INET6')
    const [alice] = await requestsAsUid(
      uids.alice,
      [`${stack.url}/token?resource=${mgmt}&identity=two`],
      undefined,
      viaV6,
    )
    assert.equal(alice!.status, 403)
    assert.match(alice!.body.error_description, /uid 64101 may not use identity "two"/, 'alice, not unknown')
    const [mallory] = await requestsAsUid(uids.mallory, [`${stack.url}${imds}`], undefined, viaV6)
    assert.equal(mallory!.status, 403)
    assert.match(mallory!.body.error_description, /uid 64102 is not listed/)
  },
)

test('a connection whose owner cannot be read is refused, with the reason, and logged', async (t) => {
  // An empty /proc: nothing can be looked up. Runs as any user (no process is spawned).
  const procRoot = mkdtempSync(join(tmpdir(), 'sidecar-proc-'))
  const stack = await allowStack(t, { socketTable: new SocketTable({ backend: 'proc', procRoot }) })
  const res = await stack.get(`/token?resource=${mgmt}`)
  assert.equal(res.status, 403)
  const body = (await res.json()) as Record<string, string>
  assert.equal(body['error'], 'forbidden')
  assert.match(body['error_description']!, /could not tell which local user opened this connection/)
  assert.match(body['error_description']!, /cannot read .*net\/tcp \(ENOENT\)/)
  const lines = stack.logs.records.filter((r) => r['msg'] === 'caller refused by callers.allow')
  assert.equal(lines.length, 1)
  assert.equal(lines[0]!['uid'], 'unknown')
  assert.match(String(lines[0]!['lookup']), /ENOENT/)
  assert.deepEqual(await refusals(stack), { 'unknown/none': 1 })
  assert.equal(stack.emulator.state.calls.count('imds.token'), 0)
})

test(
  'AgentID-compatible routes check the api identity too (no Metadata header there)',
  { skip },
  async (t) => {
    const stack = await startStack(t, {
      configYaml: (emulator) =>
        allowYaml(emulator) +
        [
          'downstreamApis:',
          '  arm:',
          '    baseUrl: https://management.azure.com',
          '    identity: two',
          `    scopes: ["${mgmt}/.default"]`,
          'compat:',
          '  agentIdSidecar: true',
          '',
        ].join('\n'),
    })
    const url = `${stack.url}/AuthorizationHeaderUnauthenticated/arm`
    const [allowed] = await requestsAsUid(uids.nobody, [url], {})
    assert.equal(allowed!.status, 200, JSON.stringify(allowed!.body))
    assert.match(allowed!.body.authorizationHeader, /^Bearer ey/)
    const [alice] = await requestsAsUid(uids.alice, [url], {})
    assert.equal(alice!.status, 403)
    // These routes answer RFC 7807 problem details, as the AgentID container does.
    assert.match(alice!.body.detail, /may not use identity "two"/)
    const [mallory] = await requestsAsUid(uids.mallory, [url], {})
    assert.equal(mallory!.status, 403)
    assert.match(mallory!.body.detail, /uid 64102 is not listed/)
  },
)
