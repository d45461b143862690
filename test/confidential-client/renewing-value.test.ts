import { test } from 'node:test'
import assert from 'node:assert/strict'
import { RenewingValue } from '../../sidecar/src/credentials/renewing.ts'
import { FakeClock } from '../support/fake-clock.ts'
import { testRuntime } from '../support/runtime.ts'

const minute = 60_000

/** A leg-1-like value source: each fetch returns `{n, expiresOn: now + lifetime}`; failures on demand. */
function setup(lifetimeMs = 60 * minute) {
  const clock = new FakeClock()
  // random 1: no jitter, renewals exactly at half-life
  const runtime = testRuntime({ clock, random: () => 1, timeoutMs: 1000 })
  let fetches = 0
  let failing = false
  let gate: Promise<void> | undefined
  const value = new RenewingValue<{ n: number; expiresOn: number }>({
    runtime,
    identity: 'app',
    label: 'fic_leg1',
    fetch: async () => {
      const n = ++fetches
      const issuedAt = clock.now()
      await gate
      if (failing) throw new Error('IMDS is down')
      return { n, expiresOn: issuedAt + lifetimeMs }
    },
    expiresOn: (v) => v.expiresOn,
  })
  return {
    clock,
    value,
    get fetches() {
      return fetches
    },
    fail(on: boolean) {
      failing = on
    },
    hold(): () => void {
      let release!: () => void
      gate = new Promise((resolve) => (release = resolve))
      return () => {
        gate = undefined
        release()
      }
    },
  }
}

test('single-flight: concurrent cold callers share one fetch, later callers get the cached value', async () => {
  const s = setup()
  const results = await Promise.all(Array.from({ length: 20 }, () => s.value.current()))
  assert.equal(s.fetches, 1)
  assert.ok(results.every((r) => r.n === 1))
  assert.equal((await s.value.current()).n, 1)
  assert.equal(s.fetches, 1)
})

test('renewed in the background at half-life; callers never wait for it', async () => {
  const s = setup()
  await s.value.current()
  await s.clock.advance(30 * minute - 1)
  assert.equal(s.fetches, 1)
  await s.clock.advance(1)
  assert.equal(s.fetches, 2)
  assert.equal((await s.value.current()).n, 2)
})

test('a value with less than 5 minutes left is never handed out, even when the background renewal keeps failing', async () => {
  const s = setup()
  await s.value.current()
  s.fail(true)
  await s.clock.advance(55 * minute - 1)
  const renewalAttempts = s.fetches - 1
  assert.ok(renewalAttempts >= 2, `renewal retried with backoff (${renewalAttempts} attempts)`)
  // Still usable: the old value is served while renewals fail.
  assert.equal((await s.value.current()).n, 1)
  await s.clock.advance(1)
  // Now within 5 minutes of expiry: the caller gets a fresh one or the failure, never the old one.
  await assert.rejects(s.value.current(), /IMDS is down/)
  s.fail(false)
  const fresh = await s.value.current()
  assert.ok(fresh.n > 1)
})

test('invalidate drops the value; a fetch that started before the invalidation never becomes current', async () => {
  const s = setup()
  await s.value.current()
  s.value.invalidate()
  const release = s.hold()
  const slow = s.value.current() // fetch #2, held
  s.value.invalidate() // e.g. leg 2 refused the binding meanwhile
  release()
  assert.equal((await slow).n, 2) // its caller still gets an answer
  const next = await s.value.current()
  assert.equal(next.n, 3) // but it was not kept
})

test('a short-lived value (60 s, e.g. bound to a 60-second certificate) is reused for half its life, not refetched per call', async () => {
  const s = setup(minute)
  const first = await s.value.current()
  for (let i = 0; i < 10; i++) {
    assert.equal((await s.value.current()).n, first.n)
    await s.clock.advance(2_000)
  }
  assert.equal(s.fetches, 1)
  await s.clock.advance(10_000) // past half-life: renewed in the background
  assert.equal(s.fetches, 2)
  // Never handed out in its last tenth (6 s) even if renewal failed.
  s.fail(true)
  await s.clock.advance(30_000)
  const late = await s.value.current().catch((error: Error) => error)
  assert.ok(late instanceof Error || s.clock.now() < late.expiresOn - 6_000)
})

test('a value that arrives already expired is refused', async () => {
  const s = setup(0)
  await assert.rejects(s.value.current(), /already expired when issued/)
})

test('close stops renewals and refuses callers', async () => {
  const s = setup()
  await s.value.current()
  s.value.close()
  await s.clock.advance(60 * minute)
  assert.equal(s.fetches, 1)
  await assert.rejects(s.value.current(), /closed/)
})
