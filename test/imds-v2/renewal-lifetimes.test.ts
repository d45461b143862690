import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { ImdsV2BindingCredential } from '../../sidecar/src/credentials/managed-identity/imds-v2-binding.ts'
import { createLogger } from '../../sidecar/src/core/log.ts'
import { SoftwareKeyProvider, type BindingKey, type KeyProvider } from '../../sidecar/src/pki/key-provider.ts'
import { ImdsV2Client } from '../../sidecar/src/upstream/imds/v2.ts'
import { FakeClock } from '../support/fake-clock.ts'
import { waitUntil } from '../support/wait-until.ts'
import { setup } from './support.ts'

const SECOND = 1000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR

/**
 * One RSA key for every certificate: these tests count IMDS calls over simulated days, and a real
 * 2048-bit keygen per certificate would make them slow. (Production takes a fresh key per mint.)
 */
export class OneKeyProvider implements KeyProvider {
  readonly protection = 'software' as const
  #key: Promise<BindingKey> | undefined
  generate(): Promise<BindingKey> {
    this.#key ??= new SoftwareKeyProvider().generate()
    return this.#key
  }
}

async function fixture(t: TestContext, lifeMs: number) {
  const clock = new FakeClock()
  const lines: string[] = []
  const logger = createLogger({ level: 'debug', destination: { write: (l: string) => void lines.push(l) } })
  const { imds, runtime } = await setup(t, {
    clock,
    logger,
    settings: { bindingCertificateValidityMs: lifeMs },
  })
  const credential = new ImdsV2BindingCredential({
    client: new ImdsV2Client({ runtime, imdsEndpoint: imds.url }),
    keyProvider: new OneKeyProvider(),
    selector: { kind: 'system' },
    runtime,
    identity: 'mi',
  })
  t.after(() => credential.close())
  const issued = () => imds.state.calls.count('imds.issuecredential')
  const events = (event: string) =>
    lines.filter((l) => (JSON.parse(l) as Record<string, unknown>)['event'] === event).length
  /** A caller every `everyMs` for `forMs`; returns how many waited for a mint (no usable certificate). */
  const traffic = async (everyMs: number, forMs: number) => {
    let waited = 0
    for (let at = 0; at < forMs; at += everyMs) {
      const before = credential.status.x5tS256
      const usableBefore = before !== undefined && !credential.status.renewing
      const got = await credential.current()
      if (!usableBefore && got.binding.x5tS256 !== before) waited++
      await clock.advance(everyMs)
    }
    await waitUntil(() => !credential.status.renewing, 'no renewal under way', { intervalMs: 10 })
    return waited
  }
  return { clock, imds, credential, issued, events, traffic }
}

// Each lifetime: a busy period, then idle days. Counted: issuecredential calls.
const cases = [
  // 7 days: MSAL's rule renews after ~6 days (24 h left): 5 certificates in 4 weeks; the old
  // half-life rule needed one every 3.5 days (8). Renewed in the background whether used or not.
  { name: '7-day', life: 7 * DAY, every: HOUR, busy: 28 * DAY, idle: 0, min: 5, max: 5 },
  // 1 hour: reused for half its life; 2 per hour while busy, none while idle.
  { name: '1-hour', life: HOUR, every: MINUTE, busy: DAY, idle: 2 * DAY, min: 48, max: 54 },
  // 60 seconds: reused for ~30 s; one per half-life while busy (not one per request), none while idle.
  { name: '60-second', life: MINUTE, every: 2 * SECOND, busy: 30 * MINUTE, idle: 2 * DAY, min: 60, max: 68 },
]

for (const c of cases) {
  test(`${c.name} certificates: renewed relative to their life, never per request, nothing while idle`, async (t) => {
    const { clock, credential, issued, events, traffic } = await fixture(t, c.life)
    const waited = await traffic(c.every, c.busy)
    const requests = Math.ceil(c.busy / c.every)
    const busyCount = issued()
    t.diagnostic(
      `${c.name}: ${requests} requests over ${c.busy / HOUR} h → ${busyCount} issuecredential calls`,
    )
    assert.ok(busyCount >= c.min && busyCount <= c.max, `${busyCount} issuecredential calls`)
    assert.equal(waited, 1, 'only the first caller waited for a certificate; renewals ran in the background')
    assert.equal(events('binding_minted'), 1)
    if (c.idle > 0) {
      await clock.advance(c.idle)
      await waitUntil(() => !credential.status.renewing, 'no renewal under way', { intervalMs: 10 })
      assert.ok(
        issued() - busyCount <= 1,
        `idle for ${c.idle / DAY} days: ${issued() - busyCount} more calls`,
      )
      const atIdleEnd = issued()
      await credential.current()
      await credential.current()
      assert.equal(issued(), atIdleEnd + 1, 'the first request after idling mints once; the next reuses it')
    }
  })

  test(`${c.name} certificates: a failing renewal backs off and keeps serving; persistent failure backs off the cold path too`, async (t) => {
    const { clock, imds, credential, issued } = await fixture(t, c.life)
    const first = await credential.current()
    const renewAt = credential.status.renewAt ?? 0
    await clock.advance(renewAt - clock.now() - 1000)
    // IMDS refuses every issuecredential from just before the renewal point until 10 minutes after
    // the certificate's end: renewal retries, then cold mints, all refused.
    const refusal = {
      status: 400,
      body: { error: 'invalid_request', error_description: 'transient refusal' },
    }
    imds.state.faults.script(
      'imds.issuecredential',
      Array.from({ length: 1000 }, () => refusal),
    )
    const outage = first.binding.notAfter + 10 * MINUTE - clock.now()
    const every = Math.min(30 * SECOND, Math.max(SECOND, outage / 600))
    let served = 0
    let failed = 0
    for (let at = 0; at < outage; at += every) {
      try {
        const got = await credential.current()
        assert.equal(got.binding.x5tS256, first.binding.x5tS256, 'the old certificate while renewal fails')
        assert.ok(clock.now() < got.binding.notAfter, 'never an expired certificate')
        served++
      } catch {
        failed++
      }
      await clock.advance(every)
      await waitUntil(() => !credential.status.renewing, 'no renewal under way', { intervalMs: 10 })
    }
    const attempts = issued() - 1
    const requests = served + failed
    t.diagnostic(
      `${c.name}: ${requests} requests (${served} served the old certificate, ${failed} failed) over ${Math.round(outage / MINUTE)} min of outage → ${attempts} issuecredential attempts`,
    )
    assert.ok(served > 0 && failed > 0)
    // Bounded by time (renewal back-off up to 15 min, cold back-off up to 60 s), not by requests.
    assert.ok(attempts * 10 <= requests, `${attempts} attempts for ${requests} requests`)
    // Recovery: once IMDS answers again, a certificate is back within the cold back-off (≤ 60 s).
    imds.state.faults.clear()
    let recovered: string | undefined
    for (let i = 0; i < 70 && !recovered; i++) {
      recovered = await credential.current().then(
        (b) => b.binding.x5tS256,
        () => undefined,
      )
      await clock.advance(SECOND)
    }
    assert.ok(recovered && recovered !== first.binding.x5tS256)
  })

  test(`${c.name} certificates: invalid_client re-mints once; a second rejection within 30 s keeps the certificate`, async (t) => {
    const { clock, credential, issued } = await fixture(t, c.life)
    const first = await credential.current()
    credential.invalidate(first.binding)
    const second = await credential.current()
    assert.notEqual(second.binding.x5tS256, first.binding.x5tS256)
    assert.equal(issued(), 2)
    // Entra refuses the fresh one too (e.g. an Entra-side problem): no certificate per request.
    for (let i = 0; i < 10; i++) {
      credential.invalidate(second.binding)
      assert.equal((await credential.current()).binding.x5tS256, second.binding.x5tS256)
    }
    assert.equal(issued(), 2)
    await clock.advance(30 * SECOND)
    const current = await credential.current()
    credential.invalidate(current.binding)
    assert.notEqual((await credential.current()).binding.x5tS256, current.binding.x5tS256)
  })
}
