import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SidecarError } from '../../sidecar/src/core/errors.ts'
import type { HttpResponse } from '../../sidecar/src/upstream/http.ts'
import { entraRetryPolicy, imdsRetryPolicy, sendWithRetry } from '../../sidecar/src/upstream/retry.ts'
import { FakeClock } from '../support/fake-clock.ts'

/** Runs sendWithRetry over scripted answers, recording when each attempt happened. */
async function schedule(
  answers: (number | 'timeout' | { status: number; retryAfter: string })[],
  policy = imdsRetryPolicy(),
  random = () => 0.5,
) {
  const clock = new FakeClock()
  const start = clock.now()
  const attempts: number[] = []
  let i = 0
  const done = sendWithRetry(
    async () => {
      attempts.push(clock.now() - start)
      const answer = answers[Math.min(i++, answers.length - 1)]!
      if (answer === 'timeout') throw new SidecarError('upstream_timeout', 'timed out', { reason: 'timeout' })
      const status = typeof answer === 'number' ? answer : answer.status
      const headers: Record<string, string> =
        typeof answer === 'number' ? {} : { 'retry-after': answer.retryAfter }
      return { status, headers, text: '{}' } satisfies HttpResponse
    },
    policy,
    { clock, random },
  ).then(
    (res) => res.status,
    (error: unknown) => (error as SidecarError).reason ?? 'error',
  )
  await clock.advanceUntil(() => attempts.length >= answers.length + 10, 500, 200_000)
  return { attempts, outcome: await done }
}

test('IMDS: 3 retries at 1 s, 2 s, 4 s (jitter centred) then the last answer', async () => {
  const { attempts, outcome } = await schedule([500, 500, 500, 500, 500])
  assert.deepEqual(attempts, [0, 1000, 3000, 7000])
  assert.equal(outcome, 500)
})

test('IMDS: the retryable statuses are 404, 408, 410, 429 and 5xx; 400 is final', async () => {
  for (const status of [404, 408, 429, 500, 503]) {
    const { attempts, outcome } = await schedule([status, 200])
    assert.equal(attempts.length, 2, String(status))
    assert.equal(outcome, 200)
  }
  for (const status of [400, 401, 403]) {
    const { attempts } = await schedule([status, 200])
    assert.equal(attempts.length, 1, String(status))
  }
})

test('IMDS: a first 410 means IMDS is restarting: 7 retries 10 s apart', async () => {
  const { attempts } = await schedule(Array(10).fill(410))
  assert.deepEqual(attempts, [0, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 70_000])
})

test('Retry-After is honoured when longer than the backoff', async () => {
  const { attempts, outcome } = await schedule([{ status: 429, retryAfter: '5' }, 200])
  assert.deepEqual(attempts, [0, 5000])
  assert.equal(outcome, 200)
})

test('a Retry-After beyond the cap ends the retries', async () => {
  const { attempts, outcome } = await schedule([{ status: 429, retryAfter: '3600' }, 200])
  assert.deepEqual(attempts, [0])
  assert.equal(outcome, 429)
})

test('jitter stays within ±20 %', async () => {
  const low = await schedule([500, 500], imdsRetryPolicy(), () => 0)
  const high = await schedule([500, 500], imdsRetryPolicy(), () => 0.999)
  assert.equal(low.attempts[1], 800)
  assert.equal(high.attempts[1], 1200)
})

test('timeouts are retried; after the last one the timeout error surfaces', async () => {
  const { attempts, outcome } = await schedule(['timeout', 'timeout', 'timeout', 'timeout'])
  assert.equal(attempts.length, 4)
  assert.equal(outcome, 'timeout')
})

test('Entra: one retry after 1 s on 5xx, none on 429 or 400', async () => {
  assert.deepEqual((await schedule([500, 500, 500], entraRetryPolicy())).attempts, [0, 1000])
  assert.deepEqual((await schedule([429, 200], entraRetryPolicy())).attempts, [0])
  assert.deepEqual((await schedule([400, 200], entraRetryPolicy())).attempts, [0])
})
