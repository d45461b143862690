import { SystemClock, type Clock, type Timer } from '../../sidecar/src/core/clock.ts'

interface Pending {
  at: number
  seq: number
  fire: () => void
  cancelled: boolean
}

/**
 * A clock tests drive by hand. `advance(ms)` moves time forward, firing due timers and sleeps in
 * order and letting the promise chains they start settle before moving on.
 */
export class FakeClock implements Clock {
  #now: number
  #seq = 0
  readonly #pending: Pending[] = []

  constructor(start = Date.UTC(2026, 10, 21, 12, 0, 0)) {
    this.#now = start
  }

  now(): number {
    return this.#now
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason)
      const entry = this.#schedule(ms, () => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      })
      const onAbort = () => {
        entry.cancelled = true
        reject(signal?.reason)
      }
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  setTimer(ms: number, fn: () => void): Timer {
    const entry = this.#schedule(ms, fn)
    return { cancel: () => void (entry.cancelled = true) }
  }

  /** Number of timers and sleeps still waiting. */
  get pendingCount(): number {
    return this.#pending.filter((p) => !p.cancelled).length
  }

  /** Moves time forward by `ms`, firing everything that falls due on the way. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms
    await settle()
    for (;;) {
      this.#pending.sort((a, b) => a.at - b.at || a.seq - b.seq)
      const next = this.#pending.find((p) => !p.cancelled)
      if (!next || next.at > target) break
      this.#pending.splice(this.#pending.indexOf(next), 1)
      this.#now = Math.max(this.#now, next.at)
      next.fire()
      await settle()
    }
    this.#now = target
    await settle()
  }

  /** Advances in steps until `predicate` holds or `maxMs` passed; for waiting on retry schedules. */
  async advanceUntil(predicate: () => boolean, stepMs: number, maxMs: number): Promise<void> {
    for (let waited = 0; !predicate() && waited < maxMs; waited += stepMs) await this.advance(stepMs)
  }

  #schedule(ms: number, fire: () => void): Pending {
    // As Node's setTimeout: a delay it cannot hold (above 2^31-1 ms, or not a number) fires after
    // 1 ms, so a test on this clock meets the same overflow production would.
    const delay = ms > 2 ** 31 - 1 || Number.isNaN(ms) ? 1 : Math.max(0, ms)
    const entry = { at: this.#now + delay, seq: this.#seq++, fire, cancelled: false }
    this.#pending.push(entry)
    return entry
  }
}

/** Lets pending promise callbacks and I/O callbacks run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve))
}

/**
 * Real time and real timers, with a test's hand on the calendar: `skip(ms)` moves `now()` forward
 * at once, without waiting (timers already set keep their real delays). For a daemon on real
 * sockets whose checks compare `now()` with a remembered time: a file checked at most once a
 * second, a cold-mint back-off.
 */
export class SkippingClock implements Clock {
  readonly #system = new SystemClock()
  #skipped = 0

  now(): number {
    return Date.now() + this.#skipped
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return this.#system.sleep(ms, signal)
  }

  setTimer(ms: number, fn: () => void): Timer {
    return this.#system.setTimer(ms, fn)
  }

  skip(ms: number): void {
    this.#skipped += ms
  }
}
