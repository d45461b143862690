import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FakeClock } from '../support/fake-clock.ts'
import { json, startStack } from '../support/stack.ts'

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
    await clock.advance(Math.round(12_000 / 18))
  }
  console.log(
    `issuecredential=${calls.count('imds.issuecredential')} entra=${calls.count('entra.mtls.token')} certs=${served.size}`,
  )
  assert.equal(calls.count('imds.issuecredential'), 1)
  assert.equal(calls.count('entra.mtls.token'), 1)
  assert.equal(served.size, 1)
})
