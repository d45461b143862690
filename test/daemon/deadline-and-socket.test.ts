import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { FakeClock } from '../support/fake-clock.ts'
import { json, startStack } from '../support/stack.ts'
import { waitUntil } from '../support/wait-until.ts'

test('requestDeadlineMs: the caller gets 503 with Retry-After while upstream work goes on', async (t) => {
  const stack = await startStack(t, {
    upstreamYaml: '  requestDeadlineMs: 800\n',
  })
  // IMDS holds the first call 5 s, far past the 800 ms deadline, so a loaded machine's slowness
  // (up to 4 s) cannot be mistaken for the daemon waiting on IMDS.
  stack.emulator.state.faults.script('imds.token', [{ status: 500, delayMs: 5000 }])
  const started = Date.now()
  const res = await stack.get('/token?resource=https://management.azure.com')
  assert.ok(Date.now() - started < 4000, 'answered by the deadline')
  assert.equal(res.status, 503)
  assert.ok(Number(res.headers.get('retry-after')) > 0)
  assert.equal((await json(res)).error, 'upstream_unavailable')
  // The acquisition carried on: once it lands (the daemon records the token's expiry), the next
  // caller is served from the cache.
  await waitUntil(
    async () =>
      (await stack.daemon.runtime.metrics.render()).includes(
        'credential_sidecar_token_expiry_timestamp_seconds{',
      ),
    'the background acquisition obtained a token',
  )
  assert.equal((await stack.get('/token?resource=https://management.azure.com')).status, 200)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 2)
})

test('IMDS 5xx until retries are exhausted is a 503 upstream_unavailable with Retry-After', async (t) => {
  const clock = new FakeClock(Date.now())
  const stack = await startStack(t, { clock })
  stack.emulator.state.faults.script(
    'imds.token',
    Array(4).fill({ status: 503, headers: { 'retry-after': '2' } }),
  )
  let settled = false
  const pending = stack
    .get('/token?resource=https://management.azure.com')
    .finally(() => void (settled = true))
  await clock.advanceUntil(() => settled || stack.emulator.state.calls.count('imds.token') >= 4, 250, 60_000)
  await clock.advanceUntil(() => settled, 250, 5_000)
  const res = await pending
  assert.equal(res.status, 503)
  assert.equal(stack.emulator.state.calls.count('imds.token'), 4, 'one call and three retries')
  assert.ok(res.headers.get('retry-after'))
  const body = await json(res)
  assert.equal(body.error, 'upstream_unavailable')
  assert.equal(body.upstream_status, 503)
})

test('listen.socket: the same API on a 0660 Unix socket', async (t) => {
  const socketPath = join(mkdtempSync(join(tmpdir(), 'sidecar-sock-')), 'sidecar.sock')
  await startStack(t, { listenYaml: `  socket: ${socketPath}\n` })
  assert.equal(statSync(socketPath).mode & 0o777, 0o660)
  const agent = new Agent({ connect: { socketPath } })
  t.after(() => agent.close())
  const res = await request('http://localhost/token?resource=https://management.azure.com', {
    dispatcher: agent,
    headers: { Metadata: 'true' },
  })
  assert.equal(res.statusCode, 200)
  assert.equal(((await res.body.json()) as { token_type: string }).token_type, 'Bearer')
})
