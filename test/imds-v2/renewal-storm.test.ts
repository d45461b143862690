import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FakeClock } from '../support/fake-clock.ts'
import { json, startStack } from '../support/stack.ts'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ImdsV2BindingCredential } from '../../sidecar/src/credentials/managed-identity/imds-v2-binding.ts'
import { SoftwareKeyProvider } from '../../sidecar/src/pki/key-provider.ts'
import { ImdsV2Client } from '../../sidecar/src/upstream/imds/v2.ts'
import { setup } from './support.ts'

const popMi = 'identities:\n  mi:\n    managedIdentity: {}\n    protocolScheme: MTLS_POP\n'

test('60-second certificates: 18 requests in 12 s cause one issuecredential and one Entra call, not one per request', async (t) => {
  // Real "now": the TLS stack checks certificate validity against the real clock.
  const clock = new FakeClock(Date.now())
  const stack = await startStack(t, {
    clock,
    configYaml: () => popMi,
    emulator: { settings: { bindingCertificateValidityMs: 60_000 } },
  })
  const { calls } = stack.emulator.state
  const served = new Set<string>()
  for (let i = 0; i < 18; i++) {
    const res = await stack.get(`/token?resource=${stack.emulator.resourceAudience}`)
    const body = await json(res)
    assert.equal(res.status, 200, JSON.stringify(body))
    served.add(body.binding_certificate['x5t#S256'])
    // A PoP token expires with its certificate: no caller keeps it past not_after.
    assert.ok(body.expires_on <= body.binding_certificate.not_after, 'expires_on ≤ the certificate not_after')
    assert.ok(body.refresh_on < body.binding_certificate.not_after)
    await clock.advance(Math.round(12_000 / 18))
  }
  t.diagnostic(
    `issuecredential=${calls.count('imds.issuecredential')} entra=${calls.count('entra.mtls.token')} certs=${served.size}`,
  )
  assert.equal(calls.count('imds.issuecredential'), 1)
  assert.equal(calls.count('entra.mtls.token'), 1)
  assert.equal(served.size, 1)
})

for (const [name, life] of [
  ['60-second', 60_000],
  ['1-hour', 3600_000],
  ['7-day', 7 * 24 * 3600_000],
] as const) {
  test(`${name} certificates through the daemon: invalid_client re-mints once and retries; a repeat within 30 s does not mint again`, async (t) => {
    const clock = new FakeClock(Date.now())
    const stack = await startStack(t, {
      clock,
      configYaml: () => popMi,
      emulator: { settings: { bindingCertificateValidityMs: life } },
    })
    const { calls, faults } = stack.emulator.state
    const token = async (resource: string) => {
      const res = await stack.get(`/token?resource=${encodeURIComponent(resource)}`)
      return { status: res.status, body: await json(res) }
    }
    const first = await token('api://one')
    assert.equal(first.status, 200)
    const refused = {
      status: 401,
      body: {
        error: 'invalid_client',
        error_description: 'AADSTS700027: certificate refused',
        error_codes: [700027],
      },
    }
    faults.script('entra.mtls.token', [refused])
    const second = await token('api://two')
    assert.equal(second.status, 200, JSON.stringify(second.body))
    assert.notEqual(second.body.binding_certificate['x5t#S256'], first.body.binding_certificate['x5t#S256'])
    assert.equal(calls.count('imds.issuecredential'), 2)
    // Entra keeps refusing: answered 502, the fresh certificate is kept (no mint per request).
    faults.script('entra.mtls.token', [refused, refused, refused, refused])
    for (const resource of ['api://three', 'api://four']) {
      const res = await token(resource)
      assert.equal(res.status, 502)
      assert.deepEqual(res.body.error_codes, [700027])
    }
    assert.equal(calls.count('imds.issuecredential'), 2)
    faults.clear()
  })
}

const DAY = 24 * 3600_000

test('30-day certificates, real clock: one issuecredential, not a renewal storm (setTimeout holds at most 24.8 days)', async (t) => {
  const stack = await startStack(t, {
    configYaml: () => popMi,
    emulator: { settings: { bindingCertificateValidityMs: 30 * DAY } },
  })
  const { calls } = stack.emulator.state
  const res = await stack.get(`/token?resource=${stack.emulator.resourceAudience}`)
  assert.equal(res.status, 200, JSON.stringify(await json(res)))
  const started = process.cpuUsage()
  await new Promise((resolve) => setTimeout(resolve, 1500))
  const cpu = process.cpuUsage(started)
  t.diagnostic(
    `issuecredential=${calls.count('imds.issuecredential')} cpu=${(cpu.user + cpu.system) / 1000} ms`,
  )
  assert.equal(calls.count('imds.issuecredential'), 1)
  assert.equal(calls.count('entra.mtls.token'), 1)
})

test('30-day certificates, fake clock: 10 s of requests cause one issuecredential', async (t) => {
  const clock = new FakeClock(Date.now())
  const stack = await startStack(t, {
    clock,
    configYaml: () => popMi,
    emulator: { settings: { bindingCertificateValidityMs: 30 * DAY } },
  })
  const { calls } = stack.emulator.state
  for (let i = 0; i < 10; i++) {
    const res = await stack.get(`/token?resource=${stack.emulator.resourceAudience}`)
    assert.equal(res.status, 200)
    await clock.advance(1000)
  }
  assert.equal(calls.count('imds.issuecredential'), 1)
  // The renewal comes when MSAL's 24 h margin is reached, once.
  await clock.advance(29 * DAY - 10_000 - 3 * 3600_000)
  assert.equal(calls.count('imds.issuecredential'), 1, 'not before the margin')
  await clock.advance(4 * 3600_000)
  await new Promise((resolve) => setTimeout(resolve, 50))
  const deadline = Date.now() + 10_000
  while (calls.count('imds.issuecredential') < 2 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    await clock.advance(10)
  }
  assert.equal(calls.count('imds.issuecredential'), 2, 'renewed once at the margin')
})

test('a stored binding with 30 days left, real clock: loaded, no issuecredential at all, no storm', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'storm-store-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'mi.json')
  const { imds, runtime } = await setup(t, { settings: { bindingCertificateValidityMs: 30 * DAY } })
  const client = new ImdsV2Client({ runtime, imdsEndpoint: imds.url })
  const make = () => {
    const credential = new ImdsV2BindingCredential({
      client,
      keyProvider: new SoftwareKeyProvider(),
      selector: { kind: 'system' },
      runtime,
      identity: 'mi',
      bindingStorePath: path,
    })
    t.after(() => credential.close())
    return credential
  }
  const first = make()
  await first.current()
  await first.close()
  assert.equal(imds.state.calls.count('imds.issuecredential'), 1)
  const restarted = make()
  await restarted.prepared()
  await restarted.current()
  await new Promise((resolve) => setTimeout(resolve, 1500))
  assert.equal(imds.state.calls.count('imds.issuecredential'), 1)
})
