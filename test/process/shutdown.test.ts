import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startEmulator } from '../support/emulator.ts'
import { waitUntil } from '../support/wait-until.ts'
import { startProcess, type RunningProcess } from './process.ts'

async function configFile(t: import('node:test').TestContext, { extra = '', shutdownGraceMs = 3000 } = {}) {
  const emulator = await startEmulator()
  t.after(() => emulator.close())
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-proc-'))
  const file = join(dir, 'config.yaml')
  writeFileSync(
    file,
    `listen:\n  port: 0\nupstream:\n  imdsEndpoint: ${emulator.imdsUrl}\nshutdownGraceMs: ${shutdownGraceMs}\n${extra}identities:\n  mi:\n    managedIdentity: {}\n`,
  )
  return { emulator, file }
}

test('the real entry point logs listening with the real port, then ready', async (t) => {
  const { file } = await configFile(t)
  const proc = startProcess(t, ['--config', file])
  const listening = await proc.waitFor('listening')
  assert.match(listening['url'], /^http:\/\/127\.0\.0\.1:\d+$/)
  assert.notEqual(new URL(listening['url']).port, '0')
  await proc.waitFor('ready')
  const res = await fetch(`${listening['url']}/token?resource=https://management.azure.com`, {
    headers: { Metadata: 'true' },
  })
  assert.equal(res.status, 200)
  proc.child.kill('SIGTERM')
  assert.deepEqual(await proc.exit, { code: 0, signal: null })
})

/** When the daemon logged `record` (its own clock, so a slow test runner does not count). */
function loggedAt(record: Record<string, any>): number {
  return Date.parse(record['time'])
}

/** Milliseconds from the daemon logging that it received the signal to it logging `stopped`. */
async function shutdownDuration(t: import('node:test').TestContext, proc: RunningProcess): Promise<number> {
  const [received, stopped] = await Promise.all([proc.waitFor('shutting down'), proc.waitFor('stopped')])
  const ms = loggedAt(stopped) - loggedAt(received)
  t.diagnostic(`the daemon stopped ${ms} ms after it received the signal`)
  return ms
}

/**
 * A ready daemon with one token request held in flight (IMDS answers it with a 500 after
 * `imdsDelayMs`, the daemon retries about a second later and gets a token), then SIGTERM:
 * resolves once the daemon logs that it is draining.
 */
async function drainingWithRequestInFlight(
  t: import('node:test').TestContext,
  { imdsDelayMs, shutdownGraceMs }: { imdsDelayMs: number; shutdownGraceMs: number },
) {
  const { emulator, file } = await configFile(t, { shutdownGraceMs })
  const proc = startProcess(t, ['--config', file])
  const { url } = await proc.waitFor('listening')
  await proc.waitFor('ready')
  emulator.state.faults.script('imds.token', [{ status: 500, delayMs: imdsDelayMs }])
  const inflight = fetch(`${url}/token?resource=https://management.azure.com`, {
    headers: { Metadata: 'true' },
  })
  inflight.catch(() => undefined) // a test may end the process before it answers
  // Signal only once the request is inside the daemon (IMDS has it): a request that arrives after
  // the signal is refused, not drained, and a fixed pause was sometimes too short under load.
  await waitUntil(() => emulator.state.calls.count('imds.token') === 1, 'the token request reached IMDS')
  proc.child.kill('SIGTERM')
  await proc.waitFor('draining')
  return { proc, url: url as string, inflight }
}

test('SIGTERM: readiness turns 503 at once, the in-flight request finishes, exit 0', async (t) => {
  // The grace is generous next to the request (~1.5 s + one retry): on a loaded machine the
  // request must not be cut by the grace period; the next test is the one where it runs out.
  const shutdownGraceMs = 10_000
  const { proc, inflight } = await drainingWithRequestInFlight(t, { imdsDelayMs: 1500, shutdownGraceMs })
  const res = await inflight
  assert.equal(res.status, 200, 'the in-flight request completed')
  const exit = await proc.exit
  assert.deepEqual(exit, { code: 0, signal: null })
  assert.ok((await shutdownDuration(t, proc)) < shutdownGraceMs, 'within shutdownGraceMs')
})

test('SIGTERM: a request still in flight when shutdownGraceMs runs out answers 503 shutting_down, exit 0 within the grace', async (t) => {
  // IMDS holds the request longer than the grace (and less than upstream.timeoutMs, 10 s). The
  // caller gets a clear, retryable answer rather than a reset connection.
  const shutdownGraceMs = 3000
  const { proc, inflight } = await drainingWithRequestInFlight(t, { imdsDelayMs: 8000, shutdownGraceMs })
  const res = await inflight
  assert.equal(res.status, 503)
  assert.ok(res.headers.get('retry-after'), 'Retry-After is set')
  const body = (await res.json()) as Record<string, unknown>
  assert.equal(body['error'], 'shutting_down')
  assert.match(String(body['correlation_id']), /^[0-9a-f-]{36}$/)
  assert.deepEqual(await proc.exit, { code: 0, signal: null })
  assert.ok(proc.stdout.some((l) => l.includes('"msg":"grace period over; closing remaining connections"')))
  assert.ok((await shutdownDuration(t, proc)) < shutdownGraceMs, 'within shutdownGraceMs')
})

test('readiness is 503 while draining', async (t) => {
  // The held request keeps the daemon draining (not yet closed) while /readyz is asked: long
  // enough that a slow test runner still asks while it drains.
  const { proc, url, inflight } = await drainingWithRequestInFlight(t, {
    imdsDelayMs: 5000,
    shutdownGraceMs: 15_000,
  })
  const { request, Agent } = await import('undici')
  const agent = new Agent()
  t.after(() => agent.close())
  const ready = await request(`${url}/readyz`, { dispatcher: agent })
  assert.equal(ready.statusCode, 503)
  assert.equal(((await ready.body.json()) as { status: string }).status, 'draining')
  const token = await request(`${url}/token?resource=https://x`, {
    dispatcher: agent,
    headers: { Metadata: 'true' },
  })
  assert.equal(token.statusCode, 503)
  assert.equal(((await token.body.json()) as { error: string }).error, 'shutting_down')
  assert.equal((await inflight).status, 200, 'the held request was still drained')
  assert.equal((await proc.exit).code, 0)
})

test('a second signal exits 1 at once', async (t) => {
  // The held request keeps the daemon draining, so the second signal finds it still running.
  const { proc, inflight } = await drainingWithRequestInFlight(t, {
    imdsDelayMs: 5000,
    shutdownGraceMs: 15_000,
  })
  proc.child.kill('SIGINT')
  assert.equal((await proc.exit).code, 1)
  assert.ok(proc.stdout.some((l) => l.includes('"msg":"second signal; exiting now"')))
  assert.ok(!proc.stdout.some((l) => l.includes('"msg":"stopped"')), 'did not wait for the drain')
  await inflight.catch(() => undefined)
})

test('a config error exits 1 naming file, line, column and key path', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-proc-'))
  const file = join(dir, 'config.yaml')
  writeFileSync(
    file,
    'listen:\n  port: 0\nidentities:\n  app:\n    tenantId: 00000000-0000-0000-0000-000000000001\n    clientId: 11111111-1111-1111-1111-111111111111\n    clientCredentials:\n      - sourceType: Nope\n',
  )
  const proc = startProcess(t, ['--config', file])
  const { code } = await proc.exit
  assert.equal(code, 1)
  assert.match(
    proc.stderr.join(''),
    /config\.yaml:8:\d+ identities\.app\.clientCredentials\[0\]\.sourceType: /,
  )
})

test('check-config prints the resolved identities and exits 0', async (t) => {
  const { file } = await configFile(t)
  const proc = startProcess(t, ['check-config', file])
  assert.equal((await proc.exit).code, 0)
  assert.match(proc.stdout.join('\n'), /mi/)
})

test('readiness is 503 at once after SIGTERM, even with nothing in flight', async (t) => {
  // A grace of 4 s or more lets the daemon linger its longest (1 s) answering probes before it
  // closes the listener, so the probe below, sent as soon as the draining line is read, reaches it.
  const { file } = await configFile(t, { shutdownGraceMs: 10_000 })
  const proc = startProcess(t, ['--config', file])
  const { url } = await proc.waitFor('listening')
  await proc.waitFor('ready')
  proc.child.kill('SIGTERM')
  await proc.waitFor('draining')
  const ready = await fetch(`${url}/readyz`)
  assert.equal(ready.status, 503)
  assert.deepEqual(await proc.exit, { code: 0, signal: null })
})

test('SIGTERM while starting (a warm identity not ready yet) still drains and exits 0', async (t) => {
  const emulator = await startEmulator({ settings: { imdsV2Enabled: false } })
  t.after(() => emulator.close())
  const file = join(mkdtempSync(join(tmpdir(), 'sidecar-proc-')), 'config.yaml')
  writeFileSync(
    file,
    `listen:\n  port: 0\nupstream:\n  imdsEndpoint: ${emulator.imdsUrl}\nidentities:\n  mi:\n    managedIdentity: {}\n    protocolScheme: MTLS_POP\n    warm: true\n`,
  )
  const proc = startProcess(t, ['--config', file])
  await proc.waitFor('listening')
  proc.child.kill('SIGTERM')
  assert.deepEqual(await proc.exit, { code: 0, signal: null })
  assert.ok(proc.stdout.some((l) => l.includes('"msg":"draining"')))
})
