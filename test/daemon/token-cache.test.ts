import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SidecarError } from '../../sidecar/src/core/errors.ts'
import { silentLogger } from '../../sidecar/src/core/log.ts'
import { Metrics } from '../../sidecar/src/core/metrics.ts'
import { RetryAfterHints, UpstreamWait } from '../../sidecar/src/core/retry-after.ts'
import { TokenCache } from '../../sidecar/src/cache/token-cache.ts'
import type { AcquiredToken } from '../../sidecar/src/model/token.ts'
import { FakeClock } from '../support/fake-clock.ts'

const hour = 3600_000
const minute = 60_000

function setup(options: { maxTokens?: number } = {}) {
  const clock = new FakeClock()
  const cache = new TokenCache({
    clock,
    random: () => 1,
    logger: silentLogger(),
    metrics: new Metrics(),
    maxTokens: options.maxTokens ?? 100,
  })
  let calls = 0
  let fail = false
  const acquire = async (lifetimeMs: number, refreshInMs?: number): Promise<AcquiredToken> => {
    calls++
    if (fail) throw new SidecarError('upstream_unavailable', 'IMDS down')
    const token: AcquiredToken = {
      tokenType: 'Bearer',
      accessToken: `token-${calls}`,
      expiresOn: clock.now() + lifetimeMs,
    }
    if (refreshInMs !== undefined) token.refreshOn = clock.now() + refreshInMs
    return token
  }
  return { clock, cache, acquire, calls: () => calls, setFail: (v: boolean) => void (fail = v) }
}

test('a long-lived token is refreshed at half-life, in the background', async () => {
  const { clock, cache, acquire, calls } = setup()
  const first = await cache.get('k', () => acquire(24 * hour))
  assert.equal(first.refreshAt - clock.now(), 12 * hour)
  assert.equal(first.servableUntil, first.expiresOn - 5 * minute)
  await clock.advance(12 * hour - 1)
  assert.equal((await cache.get('k', () => acquire(24 * hour))).accessToken, 'token-1')
  assert.equal(calls(), 1)
  await clock.advance(1)
  // Due: the cached token is answered at once, the refresh runs behind it.
  assert.equal((await cache.get('k', () => acquire(24 * hour))).accessToken, 'token-1')
  await clock.advance(0)
  assert.equal(calls(), 2)
  assert.equal((await cache.get('k', () => acquire(24 * hour))).accessToken, 'token-2')
})

test('refresh_in from upstream wins over the half-life', async () => {
  const { clock, cache, acquire } = setup()
  const token = await cache.get('k', () => acquire(24 * hour, hour))
  assert.equal(token.refreshAt - clock.now(), hour)
})

test('a short token refreshes before the 5-minute buffer and is never served inside it', async () => {
  const { clock, cache, acquire, calls, setFail } = setup()
  const token = await cache.get('k', () => acquire(hour))
  assert.equal(token.refreshAt - clock.now(), hour - 10 * minute)
  setFail(true)
  await clock.advance(hour - 5 * minute)
  await assert.rejects(
    cache.get('k', () => acquire(hour)),
    (e: SidecarError) => e.code === 'upstream_unavailable',
  )
  assert.ok(calls() >= 2)
})

test('a failed refresh keeps serving the still-valid token, retrying after a cooldown', async () => {
  const { clock, cache, acquire, calls, setFail } = setup()
  await cache.get('k', () => acquire(24 * hour))
  setFail(true)
  await clock.advance(12 * hour)
  for (let i = 0; i < 5; i++)
    assert.equal((await cache.get('k', () => acquire(24 * hour))).accessToken, 'token-1')
  await clock.advance(0)
  assert.equal(calls(), 2, 'one refresh attempt, not one per request')
  await clock.advance(30_000)
  setFail(false)
  assert.equal((await cache.get('k', () => acquire(24 * hour))).accessToken, 'token-1')
  await clock.advance(0)
  assert.equal((await cache.get('k', () => acquire(24 * hour))).accessToken, 'token-3')
})

test('concurrent cold callers share one acquisition', async () => {
  const { cache, acquire, calls } = setup()
  const results = await Promise.all(Array.from({ length: 200 }, () => cache.get('k', () => acquire(hour))))
  assert.equal(calls(), 1)
  assert.equal(new Set(results.map((r) => r.accessToken)).size, 1)
})

test('a cold failure reaches every waiting caller, and the next call tries again', async () => {
  const { cache, acquire, calls, setFail } = setup()
  setFail(true)
  const results = await Promise.allSettled(
    Array.from({ length: 10 }, () => cache.get('k', () => acquire(hour))),
  )
  assert.ok(results.every((r) => r.status === 'rejected'))
  assert.equal(calls(), 1)
  setFail(false)
  assert.equal((await cache.get('k', () => acquire(hour))).accessToken, 'token-2')
})

test('the cache is bounded by maxTokens', async () => {
  const { cache, acquire } = setup({ maxTokens: 3 })
  for (let i = 0; i < 10; i++) await cache.get(`k${i}`, () => acquire(hour))
  assert.equal(cache.size, 3)
})

test('a forced refresh never answers from the cache nor from a fetch started before it, and fails without the refused token', async () => {
  const { clock, cache, acquire, calls, setFail } = setup()
  await cache.get('k', () => acquire(hour))
  // A background refresh is under way (slow): the forced refresh must not take its answer.
  let release!: () => void
  const slow = new Promise<void>((resolve) => (release = resolve))
  await clock.advance(50 * minute) // refreshAt of a 1 h token: due, still servable
  const background = cache.get('k', async () => {
    await slow
    return acquire(hour)
  })
  assert.equal((await background).accessToken, 'token-1', 'the due token answered at once')
  const forced = cache.forceRefresh('k', () => acquire(hour))
  assert.equal((await forced).accessToken, 'token-2', 'its own request, made after the refusal, at once')
  // The background fetch, started before the refusal, answers later: it must not overwrite.
  release()
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(calls(), 3)
  assert.equal(cache.peek('k')?.accessToken, 'token-2', 'an answer from an older fetch never wins')
  assert.equal((await cache.get('k', () => acquire(hour))).accessToken, 'token-2')
  // Within the window, another forced refresh shares that answer.
  assert.equal((await cache.forceRefresh('k', () => acquire(hour))).accessToken, 'token-2')
  assert.equal(calls(), 3)
  await clock.advance(5_000)
  setFail(true)
  await assert.rejects(
    cache.forceRefresh('k', () => acquire(hour)),
    /IMDS down/,
  )
  assert.equal(cache.peek('k'), undefined, 'the refused token is not kept after a failed forced refresh')
  // Within the window the failure is shared too: no second upstream call.
  await assert.rejects(
    cache.forceRefresh('k', () => acquire(hour)),
    /IMDS down/,
  )
  assert.equal(calls(), 4)
})

test('a token that expired on arrival is upstream_error (502), not a daemon failure (500), and not cached', async () => {
  const { cache, acquire, calls } = setup()
  for (const lifetime of [0, -minute]) {
    await assert.rejects(
      cache.get(`k${lifetime}`, () => acquire(lifetime)),
      (error: unknown) => {
        assert.ok(error instanceof SidecarError, String(error))
        assert.equal(error.code, 'upstream_error')
        assert.equal(error.status, 502)
        return true
      },
    )
  }
  await assert.rejects(
    cache.get('k0', () => acquire(0)),
    SidecarError,
  )
  assert.equal(calls(), 3, 'asked upstream again')
})

test('every caller waiting on a fetch sees the Retry-After upstream asked for during it, the joiner too', async () => {
  const clock = new FakeClock()
  const hints = new RetryAfterHints()
  const cache = new TokenCache({
    clock,
    random: () => 1,
    logger: silentLogger(),
    metrics: new Metrics(),
    maxTokens: 10,
    retryAfterHints: hints,
  })
  let release!: () => void
  const slow = new Promise<void>((resolve) => (release = resolve))
  const acquire = async (): Promise<AcquiredToken> => {
    hints.note(6_500) // what the upstream client does when a 429 or 503 carries Retry-After
    await slow
    return { tokenType: 'Bearer', accessToken: 't', expiresOn: clock.now() + hour }
  }
  const first = new UpstreamWait()
  const joiner = new UpstreamWait()
  const a = cache.get('k', acquire, first)
  const b = cache.get('k', acquire, joiner)
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(first.retryAfterSeconds, 7)
  assert.equal(joiner.retryAfterSeconds, 7)
  release()
  assert.equal((await a).accessToken, (await b).accessToken)
  assert.equal(new UpstreamWait().retryAfterSeconds, undefined, 'nothing waited on: no hint')
})
