import type { Clock, Timer } from './clock.ts'

/**
 * The longest delay `setTimeout` holds: 2^31-1 ms (24.8 days). A longer one fires after 1 ms, which
 * made a 30-day binding certificate "due for renewal" at once, over and over.
 */
export const MAX_TIMER_DELAY_MS = 2 ** 31 - 1

/**
 * Runs `fn` once, `ms` from now on `clock`, whatever the length: a delay above what one timer
 * holds is waited in steps of at most `MAX_TIMER_DELAY_MS`, each re-reading the clock, so the
 * timer fires at its time even when the clock moved between steps. A negative, zero or NaN delay
 * fires on the next turn, `Infinity` never. Every timer that may wait a computed delay (a
 * certificate's or token's life, a configured timeout) goes through here.
 *
 * @example setLongTimer(clock, notAfter - margin - clock.now(), () => renew())
 */
export function setLongTimer(clock: Clock, ms: number, fn: () => void): Timer {
  if (ms === Number.POSITIVE_INFINITY) return { cancel() {} }
  const due = clock.now() + (Number.isNaN(ms) ? 0 : Math.max(0, ms))
  let current: Timer | undefined
  let cancelled = false
  const step = () => {
    if (cancelled) return
    const remaining = due - clock.now()
    if (remaining <= 0) {
      current = undefined
      fn()
      return
    }
    current = clock.setTimer(Math.min(remaining, MAX_TIMER_DELAY_MS), step)
  }
  current = clock.setTimer(Math.min(due - clock.now(), MAX_TIMER_DELAY_MS), step)
  return {
    cancel() {
      cancelled = true
      current?.cancel()
      current = undefined
    },
  }
}

/** `clock.sleep` for any delay (waited in steps, as `setLongTimer`); rejects with the signal's reason. */
export function sleepLong(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const onAbort = () => {
      timer.cancel()
      reject(signal?.reason)
    }
    const timer = setLongTimer(clock, ms, () => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    })
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
