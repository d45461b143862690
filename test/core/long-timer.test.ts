import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MAX_TIMER_DELAY_MS, setLongTimer, sleepLong } from '../../sidecar/src/core/long-timer.ts'
import { SystemClock } from '../../sidecar/src/core/clock.ts'
import { FakeClock } from '../support/fake-clock.ts'

const DAY = 24 * 3600_000

test('the fake clock behaves as setTimeout does: a delay above 2^31-1 ms fires after 1 ms', async () => {
  // What made a 30-day certificate renew in a loop: the clock's plain timer cannot hold the delay.
  const clock = new FakeClock()
  let fired = 0
  clock.setTimer(30 * DAY, () => fired++)
  await clock.advance(1)
  assert.equal(fired, 1)
})

test('a 30-day timer waits in steps and fires once, at its time', async () => {
  const clock = new FakeClock()
  let fired = 0
  setLongTimer(clock, 30 * DAY, () => fired++)
  await clock.advance(1)
  assert.equal(fired, 0)
  await clock.advance(MAX_TIMER_DELAY_MS)
  assert.equal(fired, 0, 'not after the first step')
  await clock.advance(30 * DAY - MAX_TIMER_DELAY_MS - 2)
  assert.equal(fired, 0, '1 ms early')
  await clock.advance(1)
  assert.equal(fired, 1)
  await clock.advance(60 * DAY)
  assert.equal(fired, 1)
})

test('a long timer cancelled between steps never fires', async () => {
  const clock = new FakeClock()
  let fired = 0
  const timer = setLongTimer(clock, 40 * DAY, () => fired++)
  await clock.advance(26 * DAY)
  timer.cancel()
  await clock.advance(30 * DAY)
  assert.equal(fired, 0)
  assert.equal(clock.pendingCount, 0)
})

test('short delays, zero, negative and non-finite delays', async () => {
  const clock = new FakeClock()
  const fired: string[] = []
  setLongTimer(clock, 10, () => fired.push('10'))
  setLongTimer(clock, 0, () => fired.push('0'))
  setLongTimer(clock, -5, () => fired.push('-5'))
  setLongTimer(clock, Number.POSITIVE_INFINITY, () => fired.push('inf'))
  setLongTimer(clock, Number.NaN, () => fired.push('nan'))
  await clock.advance(10)
  assert.deepEqual(fired.sort(), ['-5', '0', '10', 'nan'])
  await clock.advance(365 * DAY)
  assert.ok(!fired.includes('inf'), 'an infinite delay never fires')
})

test('sleepLong waits a long delay in steps and can be aborted', async () => {
  const clock = new FakeClock()
  let done = false
  void sleepLong(clock, 50 * DAY).then(() => (done = true))
  await clock.advance(49 * DAY)
  assert.equal(done, false)
  await clock.advance(DAY)
  assert.equal(done, true)
  const controller = new AbortController()
  const sleeping = sleepLong(clock, 50 * DAY, controller.signal)
  await clock.advance(30 * DAY)
  controller.abort(new Error('stop'))
  await assert.rejects(sleeping, /stop/)
})

test('with the real clock, a 30-day timer does not fire within 200 ms (and leaves no warning)', async () => {
  const warnings: string[] = []
  const onWarning = (w: Error) => warnings.push(w.name)
  process.on('warning', onWarning)
  let fired = 0
  const timer = setLongTimer(new SystemClock(), 30 * DAY, () => fired++)
  await new Promise((resolve) => setTimeout(resolve, 200))
  timer.cancel()
  process.off('warning', onWarning)
  assert.equal(fired, 0)
  assert.ok(!warnings.includes('TimeoutOverflowWarning'), warnings.join(','))
})
