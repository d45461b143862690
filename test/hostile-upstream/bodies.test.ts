import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startStack } from '../support/stack.ts'
import { drip, flood, hostileDaemon, hostileServer, imdsV1Yaml, sendJson, tokenPath } from './support.ts'

/** Contract §3: every upstream answer is bounded before it is trusted (1 MiB; the attempt's timeout). */

const imdsPath = '/metadata/identity/oauth2/token'
const MiB = 1024 * 1024

test('a 400 MB IMDS answer is cut off after 1 MiB: 502, connection closed, memory flat, not cached', async (t) => {
  const imds = await hostileServer(t, (_req, res) => flood(res, 400 * MiB))
  const daemon = await hostileDaemon(t, imdsV1Yaml(imds.url))
  const rssBefore = process.memoryUsage().rss
  const first = await daemon.get(tokenPath)
  assert.equal(first.status, 502, JSON.stringify(first.body))
  assert.equal(first.body.error, 'upstream_error')
  assert.match(first.body.error_description, /larger than 1048576 bytes/)
  // The connection was destroyed: the server could not push the 400 MB.
  await new Promise((resolve) => setTimeout(resolve, 100))
  assert.equal(imds.seen.abortedAnswers, 1)
  const written = imds.seen.bytesWrittenBeforeAbort[0] ?? Infinity
  assert.ok(written < 32 * MiB, `server wrote ${written} bytes before the cut`)
  const grown = process.memoryUsage().rss - rssBefore
  assert.ok(grown < 100 * MiB, `rss grew by ${grown}`)
  // Not cached, not poisoned: the next request asks upstream again.
  const second = await daemon.get(tokenPath)
  assert.equal(second.status, 502)
  assert.equal(imds.seen.count(imdsPath), 2)
})

test('a Content-Length above 1 MiB is refused before the body is read', async (t) => {
  const imds = await hostileServer(t, (_req, res) =>
    flood(res, 400 * MiB, { 'content-length': String(400 * MiB) }),
  )
  const daemon = await hostileDaemon(t, imdsV1Yaml(imds.url))
  const res = await daemon.get(tokenPath)
  assert.equal(res.status, 502)
  assert.equal(res.body.error, 'upstream_error')
  await new Promise((resolve) => setTimeout(resolve, 100))
  assert.equal(imds.seen.abortedAnswers, 1)
})

test('an answer of exactly 1 MiB of valid JSON is still read', async (t) => {
  const now = Math.floor(Date.now() / 1000)
  const imds = await hostileServer(t, (_req, res) => {
    const body = {
      access_token: 'not-a-jwt',
      expires_in: '3599',
      expires_on: String(now + 3599),
      token_type: 'Bearer',
      pad: '',
    }
    const base = JSON.stringify(body).length
    body.pad = 'x'.repeat(MiB - base)
    sendJson(res, 200, body)
  })
  const daemon = await hostileDaemon(t, imdsV1Yaml(imds.url))
  const res = await daemon.get(tokenPath)
  assert.equal(res.status, 200, JSON.stringify(res.body).slice(0, 300))
})

test('a body that drips a byte every 50 ms is cut at the attempt timeout; the caller is answered by the deadline', async (t) => {
  // The first three attempts drip (headers at once: only the body is slow), the fourth answers.
  const now = Math.floor(Date.now() / 1000)
  const imds = await hostileServer(t, (_req, res, call) => {
    if (call <= 100) return drip(res, { chunk: ' ', intervalMs: 50 })
    sendJson(res, 200, {
      access_token: 'x',
      expires_in: '3599',
      expires_on: String(now + 3599),
      token_type: 'Bearer',
    })
  })
  const daemon = await hostileDaemon(t, imdsV1Yaml(imds.url, '  timeoutMs: 600\n  requestDeadlineMs: 2000\n'))
  const res = await daemon.get(tokenPath)
  assert.ok(res.ms < 3000, `answered after ${res.ms} ms`)
  assert.ok(res.status === 503 || res.status === 504, `status ${res.status}`)
  // Each attempt's connection was cut at about 600 ms: by now at least one was, none lives on.
  await new Promise((resolve) => setTimeout(resolve, 200))
  assert.ok(imds.seen.abortedAnswers >= 1, `aborted ${imds.seen.abortedAnswers}`)
  const health = await fetch(`${daemon.url}/healthz`)
  assert.equal(health.status, 200)
})

test('a truncated body (connection dropped mid-answer) is a transport failure, never a token', async (t) => {
  const imds = await hostileServer(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '500' })
    res.write('{"access_token":"abc","expires_in":"3599"')
    setTimeout(() => res.destroy(), 20)
  })
  const daemon = await hostileDaemon(t, imdsV1Yaml(imds.url, '  timeoutMs: 600\n  requestDeadlineMs: 1500\n'))
  const res = await daemon.get(tokenPath)
  assert.ok(res.status === 503 || res.status === 502, `status ${res.status}`)
  assert.ok(res.ms < 2500, `answered after ${res.ms} ms`)
})

test('a well-framed but cut JSON body is a malformed answer: 502, and the next request asks again', async (t) => {
  const imds = await hostileServer(t, (_req, res) =>
    sendJson(res, 200, '{"access_token":"abc","expires_in":"35'),
  )
  const daemon = await hostileDaemon(t, imdsV1Yaml(imds.url))
  const first = await daemon.get(tokenPath)
  assert.equal(first.status, 502)
  assert.equal(first.body.error, 'upstream_error')
  await daemon.get(tokenPath)
  assert.equal(imds.seen.count(imdsPath), 2)
})

test('Entra answering 2 MiB: the same bound applies to the token endpoint (502, not cached)', async (t) => {
  const secret = 'bounded-body-secret-0123456789'
  const stack = await startStack(t, {
    register: () => ({ clientSecrets: [secret] }),
    app: () =>
      ['    clientCredentials:', '      - sourceType: ClientSecret', `        clientSecret: ${secret}`].join(
        '\n',
      ),
  })
  stack.emulator.state.faults.script('entra.token', [{ status: 200, body: 'x'.repeat(2 * MiB) }])
  const first = await stack.token('https://graph.microsoft.com')
  assert.equal(first.status, 502, JSON.stringify(first.body))
  assert.match(String(first.body.error_description), /larger than 1048576 bytes/)
  const second = await stack.token('https://graph.microsoft.com')
  assert.equal(second.status, 200, 'asked Entra again, which answers normally now')
  assert.equal(stack.emulator.state.calls.count('entra.token'), 2)
})
