import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FakeClock } from '../support/fake-clock.ts'
import { startStack } from '../support/stack.ts'

/**
 * The proof that one route table feeds both doors (issue 22 item 2): every token route at each of
 * its path forms, with good and bad parameters and with each caller-check failure, is sent to the
 * daemon (fast lane in front of hono) and to the daemon's own hono app served alone on a second
 * port. Both share one token cache and a fake clock, so every answer must be the same bytes —
 * status, headers (Date aside) and body (the random correlation id of an error aside) — and the
 * lane must have answered every plain request hono answers 200, and nothing else.
 */

const resource = 'https://management.azure.com'
const imdsPath = '/metadata/identity/oauth2/token'
const appServicePath = '/msi/token'

interface Answer {
  status: number
  head: string[]
  body: string
}

/** One raw HTTP/1.1 exchange on its own connection: the test sees exactly the bytes on the wire. */
function rawGet(port: number, path: string, headers: readonly string[]): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' })
    const chunks: Buffer[] = []
    socket.on('connect', () =>
      socket.write([`GET ${path} HTTP/1.1`, ...headers, 'Connection: close', '', ''].join('\r\n')),
    )
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', reject)
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      const split = text.indexOf('\r\n\r\n')
      const lines = text.slice(0, split).split('\r\n')
      resolve({ status: Number(lines[0]?.slice(9, 12)), head: lines, body: text.slice(split + 4) })
    })
  })
}

/** What must be equal: everything but the Date header and an error's random correlation id. */
function comparable(answer: Answer): Answer {
  return {
    status: answer.status,
    head: answer.head.filter((line) => !/^date:/i.test(line)),
    body: answer.body.replace(/"correlation_id":"[0-9a-f-]{36}"/, '"correlation_id":"…"'),
  }
}

interface Query {
  query: string
  /** Only names the lane reads (no CAE parameter, nothing unknown): the lane must take it if valid. */
  plain: boolean
}

test('both doors answer every token route, path form, parameter and caller-check failure alike', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-doors-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const secretFile = join(dir, 'identity-header')
  writeFileSync(secretFile, 's3cr3t\n', { mode: 0o600 })
  const clock = new FakeClock()
  let one = ''
  let two = ''
  const stack = await startStack(t, {
    clock,
    configYaml: (emu) => {
      one = emu.state.managedIdentities[1]!.clientId
      two = emu.state.managedIdentities[2]!.objectId
      return (
        `callers:\n  secretFile: ${secretFile}\nidentities:\n  mi:\n    managedIdentity: {}\n` +
        `  one:\n    managedIdentity:\n      userAssignedClientId: "${one}"\n` +
        `  two:\n    managedIdentity:\n      userAssignedObjectId: "${two}"\n`
      )
    },
  })
  const hono: Server = createServer(stack.daemon.honoListener)
  hono.listen(0, '127.0.0.1')
  await once(hono, 'listening')
  t.after(() => new Promise<void>((resolve) => hono.close(() => resolve())))
  const honoPort = (hono.address() as { port: number }).port
  const lanePort = Number(new URL(stack.url).port)

  const R = encodeURIComponent(resource)
  const tokenQueries: Query[] = [
    { query: `resource=${R}`, plain: true },
    { query: `resource=${resource}/`, plain: true },
    { query: `scope=${R}%2F.default`, plain: true },
    { query: `resource=${R}&identity=one`, plain: true },
    { query: `identity=two&scope=${resource}/.default`, plain: true },
    { query: `resource=${R}&identity=nobody`, plain: true },
    { query: `resource=${R}&resource=${R}`, plain: true },
    { query: `resource=${R}&scope=${R}%2F.default`, plain: true },
    { query: 'resource=', plain: true },
    { query: `resource=${R}%23fragment`, plain: true },
    { query: `resource=${R}&claims=e30`, plain: false },
    { query: `resource=${R}&token_sha256_to_refresh=00`, plain: false },
    { query: `resource=${R}&unknown=1`, plain: false },
  ]
  const imdsQueries: Query[] = [
    { query: `api-version=2018-02-01&resource=${R}`, plain: true },
    { query: `resource=${R}%2F&api-version=2018-02-01`, plain: true },
    { query: `api-version=2018-02-01&resource=${R}&client_id=${one}`, plain: true },
    { query: `api-version=2018-02-01&resource=${R}&object_id=${two}`, plain: true },
    { query: `api-version=2018-02-01&resource=${R}&msi_res_id=%2Fsubscriptions%2Fx`, plain: true },
    { query: `api-version=2018-02-01&resource=${R}&client_id=${one}&object_id=${two}`, plain: true },
    { query: `api-version=2018-02-01&resource=${R}&msi_res_id=a&mi_res_id=b`, plain: true },
    { query: `resource=${R}`, plain: true },
    { query: 'api-version=2018-02-01', plain: true },
    { query: `api-version=2018-02-01&resource=${R}&resource=${R}`, plain: true },
    { query: `api-version=2018-02-01&resource=${R}&xms_cc=cp1`, plain: false },
    { query: `api-version=2018-02-01&resource=${R}&bogus=1`, plain: false },
  ]
  const appServiceQueries: Query[] = [
    { query: `api-version=2019-08-01&resource=${R}`, plain: true },
    { query: `resource=${R}%2F&api-version=2019-08-01`, plain: true },
    { query: `api-version=2017-09-01&resource=${R}`, plain: true },
    { query: `api-version=2025-03-30&resource=${R}`, plain: true },
    { query: `api-version=1999-01-01&resource=${R}`, plain: true },
    { query: `resource=${R}`, plain: true },
    { query: 'api-version=2019-08-01', plain: true },
    { query: `api-version=2019-08-01&resource=${R}&client_id=${one}`, plain: true },
    { query: `api-version=2019-08-01&resource=${R}&principal_id=${two}`, plain: true },
    { query: `api-version=2019-08-01&resource=${R}&object_id=${two}`, plain: true },
    { query: `api-version=2019-08-01&resource=${R}&principal_id=${two}&object_id=${two}`, plain: true },
    { query: `api-version=2017-09-01&resource=${R}&clientid=${one}`, plain: false },
    { query: `api-version=2019-08-01&resource=${R}&token_sha256_to_refresh=00`, plain: false },
  ]
  const targets: string[] = []
  for (const { query } of tokenQueries) targets.push(`/token?${query}`)
  for (const path of [imdsPath, `${imdsPath}/`, `/${imdsPath}`, `/${imdsPath}/`])
    for (const { query } of imdsQueries) targets.push(`${path}?${query}`)
  for (const path of [appServicePath, `${appServicePath}/`, `/${appServicePath}`, `/${appServicePath}/`])
    for (const { query } of appServiceQueries) targets.push(`${path}?${query}`)
  // No query, and /token's slash forms, which it is not served at (404 on both doors).
  targets.push('/token', imdsPath, `${appServicePath}/`, `/token/?resource=${R}`, `//token?resource=${R}`)
  const plain = new Set(
    [...tokenQueries, ...imdsQueries, ...appServiceQueries].filter((q) => q.plain).map((q) => q.query),
  )

  const host = `Host: ${new URL(stack.url).host}`
  const secrets = ['X-IDENTITY-HEADER: s3cr3t', 'secret: s3cr3t']
  const headerSets: Record<string, string[]> = {
    good: [host, 'Metadata: true', ...secrets],
    'no Metadata': [host, ...secrets],
    'wrong secret': [host, 'Metadata: true', 'X-IDENTITY-HEADER: nope', 'secret: nope'],
    'no secret': [host, 'Metadata: true'],
    'foreign Host': ['Host: evil.example', 'Metadata: true', ...secrets],
    'two Hosts': [host, host, 'Metadata: true', ...secrets],
    forwarded: [host, 'Metadata: true', ...secrets, 'X-Forwarded-For: 10.0.0.1'],
    'IMDS Host': ['Host: 169.254.169.254', 'Metadata: true', ...secrets],
  }

  const lane = stack.daemon.fastLane
  let laneServed = 0
  const statuses = new Set<number>()
  for (const target of targets) {
    for (const [name, headers] of Object.entries(headerSets)) {
      const label = `${name}: GET ${target}`
      // hono first: a miss is fetched there, so the lane's turn is a cache hit of the same token.
      const before = lane.served
      const slow = await rawGet(honoPort, target, headers)
      assert.equal(lane.served, before, `${label}: the hono port never reaches the lane`)
      const fast = await rawGet(lanePort, target, headers)
      const served = lane.served === before + 1
      assert.deepEqual(comparable(fast), comparable(slow), label)
      statuses.add(slow.status)
      const query = target.slice(target.indexOf('?') + 1)
      if (slow.status === 200 && target.includes('?') && plain.has(query)) {
        assert.ok(served, `${label}: a plain cache hit is the lane's`)
        laneServed++
      } else {
        assert.ok(!served, `${label}: the lane stands aside (hono answers ${slow.status})`)
      }
    }
  }
  // The corpus reaches every outcome it is meant to: answers and each kind of refusal.
  assert.deepEqual([...statuses].sort(), [200, 400, 401, 403, 404])
  assert.ok(laneServed >= 90, `the lane answered ${laneServed} requests`)
  t.diagnostic(
    `${targets.length * Object.keys(headerSets).length} requests to each door; the lane answered ${laneServed}`,
  )
})
