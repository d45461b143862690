import { untilAborted } from '../core/abort.ts'
import type { Timer } from '../core/clock.ts'
import { SidecarError, describeError } from '../core/errors.ts'
import type { Runtime } from '../core/runtime.ts'
import { spread, upToEarlier } from '../core/jitter.ts'

export interface RenewingValueOptions<T> {
  runtime: Runtime
  /** For logs: the identity and what the value is (e.g. `fic_leg1`). Never the value. */
  identity: string
  label: string
  /** Fetches a new value. The signal aborts only on close: one caller giving up does not cancel it. */
  fetch(signal: AbortSignal): Promise<T>
  /** Epoch ms. */
  expiresOn(value: T): number
  /**
   * Never hand out a value with less than this left (default 5 minutes), or less than a tenth of
   * its life when it lives shorter (a leg 1 bound to a minute-long certificate is still usable).
   */
  minRemainingMs?: number
}

const defaultMinRemainingMs = 5 * 60_000
const retryBaseMs = 10_000
const retryMaxMs = 5 * 60_000

/**
 * One expiring value (an FIC leg-1 assertion) kept fresh ahead of its users:
 * - single-flight: any number of callers share one fetch;
 * - a value with less than `minRemainingMs` left (a tenth of its life if it lives shorter) is never handed out;
 * - renewed in the background at half-life (never later than the `minRemainingMs` mark), with
 *   jitter; callers keep the old value while the renewal runs; a failed renewal retries with
 *   backoff while the old value is usable;
 * - `invalidate` drops it, and a fetch that started before an invalidation never becomes current.
 */
export class RenewingValue<T> {
  readonly #options: RenewingValueOptions<T>
  readonly #minRemainingMs: number
  readonly #abort = new AbortController()
  #value: T | undefined
  /** The margin for `#value`: `minRemainingMs`, or a tenth of its life if that is less. */
  #margin = 0
  /** Bumped by invalidate: fetches from an older generation are not stored. */
  #generation = 0
  #inflight: { generation: number; promise: Promise<T> } | undefined
  #timer: Timer | undefined
  #failures = 0
  #closed = false

  constructor(options: RenewingValueOptions<T>) {
    this.#options = options
    this.#minRemainingMs = options.minRemainingMs ?? defaultMinRemainingMs
  }

  /** The usable value, fetching (single-flight) when there is none. */
  current(signal?: AbortSignal): Promise<T> {
    if (this.#closed) return Promise.reject(closedError(this.#options))
    const usable = this.peek()
    if (usable !== undefined) return Promise.resolve(usable)
    return untilAborted(this.#fetch(), signal)
  }

  /** The value if it is still usable, without fetching. */
  peek(): T | undefined {
    const value = this.#value
    if (
      value !== undefined &&
      this.#options.runtime.clock.now() < this.#options.expiresOn(value) - this.#margin
    )
      return value
    return undefined
  }

  /** Forgets the value (and any fetch already running): the next `current` fetches anew. */
  invalidate(): void {
    this.#generation++
    this.#value = undefined
    this.#inflight = undefined
    this.#cancelTimer()
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#cancelTimer()
    this.#abort.abort(closedError(this.#options))
    this.#value = undefined
  }

  #fetch(): Promise<T> {
    if (this.#inflight && this.#inflight.generation === this.#generation) return this.#inflight.promise
    const generation = this.#generation
    const promise = this.#doFetch(generation).finally(() => {
      if (this.#inflight?.promise === promise) this.#inflight = undefined
    })
    this.#inflight = { generation, promise }
    return promise
  }

  async #doFetch(generation: number): Promise<T> {
    const { runtime } = this.#options
    const value = await this.#options.fetch(this.#abort.signal)
    const now = runtime.clock.now()
    const expiresOn = this.#options.expiresOn(value)
    const margin = Math.min(this.#minRemainingMs, (expiresOn - now) / 10)
    if (expiresOn - margin <= now) {
      throw new SidecarError(
        'upstream_error',
        `${this.#options.label} for identity "${this.#options.identity}" has already expired when issued`,
        { reason: 'malformed_response' },
      )
    }
    if (generation === this.#generation && !this.#closed) {
      this.#value = value
      this.#margin = margin
      this.#failures = 0
      // Half-life, jittered up to 10 % earlier, and never past the point where it stops being usable.
      const halfLife = (expiresOn - now) / 2
      const latest = expiresOn - margin - now
      this.#schedule(Math.min(upToEarlier(halfLife, 0.1, runtime.random), latest))
      runtime.logger.debug(
        {
          identity: this.#options.identity,
          credential: this.#options.label,
          expires_on: new Date(expiresOn).toISOString(),
        },
        'credential renewed',
      )
    }
    return value
  }

  #schedule(delayMs: number): void {
    this.#cancelTimer()
    if (this.#closed) return
    this.#timer = this.#options.runtime.clock.setTimer(Math.max(0, Math.round(delayMs)), () => this.#renew())
  }

  #cancelTimer(): void {
    this.#timer?.cancel()
    this.#timer = undefined
  }

  #renew(): void {
    this.#timer = undefined
    if (this.#closed) return
    const generation = this.#generation
    this.#fetch().catch((error: unknown) => {
      if (this.#closed || generation !== this.#generation) return
      this.#failures++
      const { runtime, identity, label, expiresOn } = this.#options
      const usable = this.peek()
      runtime.logger.warn(
        {
          identity,
          credential: label,
          failures: this.#failures,
          error: describeError(error),
          serving: usable !== undefined,
        },
        'background credential renewal failed',
      )
      // Nothing usable left: the next caller fetches in the foreground.
      if (usable === undefined) return
      const backoff = Math.min(retryBaseMs * 2 ** (this.#failures - 1), retryMaxMs)
      const latest = expiresOn(usable) - this.#margin - runtime.clock.now()
      this.#schedule(Math.min(spread(backoff, 0.1, runtime.random), latest))
    })
  }
}

function closedError(options: { identity: string }): SidecarError {
  return new SidecarError('shutting_down', `identity ${options.identity}: credential is closed`)
}
