import { untilAborted } from '../core/abort.ts'
import type { Random, Timer } from '../core/clock.ts'
import { SidecarError, describeError } from '../core/errors.ts'
import type { Runtime } from '../core/runtime.ts'
import { spread, upToEarlier } from '../core/jitter.ts'
import { exponentialBackoff } from '../core/backoff.ts'
import { setLongTimer } from '../core/long-timer.ts'

/** When a value is renewed and until when it is handed out: fixed by its policy when it arrives. */
export interface Lifetime {
  /** Its expiry minus when it was received (never negative). */
  lifeMs: number
  /** Epoch ms from which it should be replaced. */
  renewAt: number
  /** Epoch ms from which it is no longer handed out. */
  usableUntil: number
  /** Renewed in the background whether used or not; otherwise only if used since it was issued. */
  renewWhenIdle: boolean
  /** Saved to the store, when there is one. */
  persist: boolean
}

/** Lifetime-relative renewal: when to renew, until when to hand out, how to back off a failed renewal. */
export interface RenewalPolicy {
  /** @param random in [0, 1): spreads a fleet's renewals. */
  lifetime(receivedAt: number, expiresOn: number, random: Random): Lifetime
  /**
   * The delay before retrying after the `failures`-th background renewal in a row failed, while the
   * value is still usable; undefined lets it lapse (the next caller fetches in the foreground).
   */
  retryDelay(failures: number, lifetime: Lifetime, now: number, random: Random): number | undefined
}

/**
 * The FIC leg-1 policy: renewed at half-life, jittered up to 10 % earlier; handed out until
 * `minRemainingMs` before expiry, or a tenth of its life when it lives shorter (a leg 1 bound to a
 * minute-long certificate is still usable); a failed renewal retries after 10 s doubling to 5 min.
 */
export function halfLifeRenewal(minRemainingMs = 5 * 60_000): RenewalPolicy {
  return {
    lifetime(receivedAt, expiresOn, random) {
      const lifeMs = Math.max(0, expiresOn - receivedAt)
      const usableUntil = expiresOn - Math.min(minRemainingMs, lifeMs / 10)
      // Never past the point where it stops being usable.
      const renewIn = Math.min(upToEarlier(lifeMs / 2, 0.1, random), usableUntil - receivedAt)
      return {
        lifeMs,
        renewAt: receivedAt + Math.round(renewIn),
        usableUntil,
        renewWhenIdle: true,
        persist: false,
      }
    },
    retryDelay(failures, lifetime, now, random) {
      const backoff = exponentialBackoff(10_000, 5 * 60_000, failures)
      return Math.min(spread(backoff, 0.1, random), lifetime.usableUntil - now)
    },
  }
}

/** How a value became current. */
export type Arrival = 'fetched' | 'renewed' | 'loaded'

/** What the engine reports, for logs and metrics. The default logs the FIC leg-1 lines. */
export interface RenewalLog<T> {
  applied(value: T, lifetime: Lifetime, arrival: Arrival): void
  /** A result that started before an invalidation, or older than the current value, was not kept. */
  discarded(value: T, seq: number): void
  renewalFailed(error: unknown, failures: number, serving: T | undefined): void
  /** The renewal point of a value nobody used since it was issued passed: the next use renews. */
  renewalDeferred(): void
}

/** Where a value persists across restarts. Operations run one at a time, in order. */
export interface ValueStore<T> {
  /** Called once, before the first value is handed out: a value to reuse, if any. */
  load(): Promise<T | undefined>
  /** After a fresh value is applied, when its lifetime says `persist`. */
  save(value: T): Promise<void>
  /** After an invalidation. */
  remove(): Promise<void>
  /** A save or remove failed: logged, never thrown (the value in memory is unaffected). */
  updateFailed(error: unknown): void
}

export interface RenewingValueOptions<T> {
  runtime: Runtime
  /** For logs: the identity and what the value is (e.g. `fic_leg1`). Never the value. */
  identity: string
  label: string
  /** Fetches a new value. The signal aborts only on close: one caller giving up does not cancel it. */
  fetch(signal: AbortSignal): Promise<T>
  /** Epoch ms. */
  expiresOn(value: T): number
  /** Default: `halfLifeRenewal()`. */
  policy?: RenewalPolicy
  /**
   * After a failed fetch started by a caller (nothing usable), callers get that failure, without a
   * new fetch, for `baseMs`, doubling per failure to `maxMs`. Default: every caller fetches.
   */
  coldRetry?: { baseMs: number; maxMs: number }
  /** An invalidation within this long of the previous one is refused (`invalidate` returns false). */
  minInvalidationIntervalMs?: number
  /**
   * A fetch already running when the value is invalidated still becomes current when it lands (it is
   * a fresh value, not the refused one). Default: it is discarded and the next caller fetches anew.
   */
  fetchOutlivesInvalidation?: boolean
  store?: ValueStore<T>
  log?: RenewalLog<T>
}

/** What `status` reports, for /credential, doctor and tests. */
export interface RenewalStatus<T> {
  /** The current value, usable or not; undefined before the first one and after an invalidation. */
  value: T | undefined
  /** When the background renewal is due (epoch ms), if scheduled. */
  renewAt: number | undefined
  renewing: boolean
  /** Background renewals that failed in a row. */
  failures: number
}

/**
 * The one renewal engine for any expiring value (FIC leg-1 assertion, IMDS v2 binding certificate),
 * kept fresh ahead of its users:
 * - single-flight: any number of callers share one fetch;
 * - lifetime-relative: its policy says when a value is renewed and until when it is handed out; a
 *   value past that point is never handed out;
 * - renewed in the background, jittered; callers keep the old value while the renewal runs; a failed
 *   renewal retries with back-off while the old value is usable;
 * - sequence-guarded: a result older than the current value, or (unless `fetchOutlivesInvalidation`)
 *   one that started before an invalidation, never becomes current;
 * - `invalidate` drops the value; `store` hooks load it once at start, save it, remove it.
 */
export class RenewingValue<T> {
  readonly #options: RenewingValueOptions<T>
  readonly #policy: RenewalPolicy
  readonly #log: RenewalLog<T>
  readonly #abort = new AbortController()
  #current: { value: T; lifetime: Lifetime } | undefined
  /** Sequence number of `#current`'s fetch: an older result never replaces it. */
  #currentSeq = 0
  #seq = 0
  /** Bumped by invalidate: fetches from an older generation are not stored (unless they outlive it). */
  #generation = 0
  #invalidatedAt = Number.NEGATIVE_INFINITY
  #inflight: Promise<T> | undefined
  #timer: Timer | undefined
  #renewAt: number | undefined
  #failures = 0
  /** Handed out since it was applied: a value that is not `renewWhenIdle` is renewed only then. */
  #usedSinceApply = false
  /** The renewal point of an unused value passed: the next use renews. */
  #renewDue = false
  #coldFailures = 0
  #coldError: unknown
  #coldRetryAt = Number.NEGATIVE_INFINITY
  #storeLoad: Promise<void> | undefined
  #storeLoaded: boolean
  #storeOps: Promise<void> = Promise.resolve()
  #closed = false

  constructor(options: RenewingValueOptions<T>) {
    this.#options = options
    this.#policy = options.policy ?? halfLifeRenewal()
    this.#log = options.log ?? defaultLog(options)
    this.#storeLoaded = options.store === undefined
  }

  /** Loads the store (if any) in the background. Idempotent. */
  start(): void {
    if (!this.#closed) void this.#loadOnce()
  }

  /** Resolves once the stored value (if any) is in. */
  loaded(): Promise<void> {
    return this.#loadOnce()
  }

  /** The usable value, fetching (single-flight) when there is none. */
  current(signal?: AbortSignal): Promise<T> {
    if (this.#closed) return Promise.reject(closedError(this.#options))
    if (this.#options.store === undefined) return this.#currentLoaded(signal)
    return this.#loadOnce().then(() => this.#currentLoaded(signal))
  }

  /** The value if it is still usable, without fetching. */
  peek(): T | undefined {
    if (this.#closed || !this.#storeLoaded) return undefined
    return this.#usable()?.value
  }

  /**
   * Forgets the value (and, unless `fetchOutlivesInvalidation`, any fetch already running): the next
   * `current` fetches anew. False when refused by `minInvalidationIntervalMs`.
   */
  invalidate(): boolean {
    const now = this.#options.runtime.clock.now()
    if (now - this.#invalidatedAt < (this.#options.minInvalidationIntervalMs ?? 0)) return false
    this.#invalidatedAt = now
    this.#generation++
    this.#current = undefined
    if (!this.#options.fetchOutlivesInvalidation) this.#inflight = undefined
    this.#cancelTimer()
    const store = this.#options.store
    if (store) this.#queueStore(store, () => store.remove())
    return true
  }

  get status(): RenewalStatus<T> {
    return {
      value: this.#current?.value,
      renewAt: this.#renewAt,
      renewing: this.#inflight !== undefined,
      failures: this.#failures,
    }
  }

  /** Cancels timers and in-flight fetches; waits for pending store operations. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#cancelTimer()
    this.#abort.abort(closedError(this.#options))
    await this.#inflight?.catch(() => undefined)
    await this.#storeOps
  }

  #currentLoaded(signal: AbortSignal | undefined): Promise<T> {
    const usable = this.#usable()
    if (usable) {
      this.#usedSinceApply = true
      if (this.#renewDue) {
        this.#renewDue = false
        this.#renew()
      }
      return Promise.resolve(usable.value)
    }
    if (!this.#inflight && this.#options.runtime.clock.now() < this.#coldRetryAt)
      return Promise.reject(this.#coldError)
    return untilAborted(this.#fetch('fetched'), signal)
  }

  #usable(): { value: T; lifetime: Lifetime } | undefined {
    const current = this.#current
    if (current && this.#options.runtime.clock.now() < current.lifetime.usableUntil) return current
    return undefined
  }

  #fetch(arrival: 'fetched' | 'renewed'): Promise<T> {
    if (this.#inflight) return this.#inflight
    const seq = ++this.#seq
    const generation = this.#generation
    const promise = this.#fetchAndApply(seq, generation, arrival).finally(() => {
      if (this.#inflight === promise) this.#inflight = undefined
    })
    this.#inflight = promise
    const coldRetry = this.#options.coldRetry
    if (arrival === 'fetched' && coldRetry) {
      promise.then(
        () => {
          this.#coldFailures = 0
          this.#coldRetryAt = Number.NEGATIVE_INFINITY
        },
        (error: unknown) => {
          if (this.#closed) return
          this.#coldFailures++
          this.#coldError = error
          this.#coldRetryAt =
            this.#options.runtime.clock.now() +
            exponentialBackoff(coldRetry.baseMs, coldRetry.maxMs, this.#coldFailures)
        },
      )
    }
    return promise
  }

  async #fetchAndApply(seq: number, generation: number, arrival: 'fetched' | 'renewed'): Promise<T> {
    const value = await this.#options.fetch(this.#abort.signal)
    this.#apply(seq, generation, value, arrival)
    return value
  }

  #apply(seq: number, generation: number, value: T, arrival: Arrival): void {
    const { runtime, identity, label, expiresOn } = this.#options
    const now = runtime.clock.now()
    const lifetime = this.#policy.lifetime(now, expiresOn(value), runtime.random)
    if (lifetime.usableUntil <= now) {
      const message = `${label} for identity "${identity}" has already expired when issued`
      throw new SidecarError('upstream_error', message, { reason: 'malformed_response' })
    }
    const outdated = !this.#options.fetchOutlivesInvalidation && generation !== this.#generation
    if (this.#closed || seq < this.#currentSeq || outdated) {
      this.#log.discarded(value, seq)
      return
    }
    this.#current = { value, lifetime }
    this.#currentSeq = seq
    this.#failures = 0
    this.#usedSinceApply = arrival === 'fetched'
    this.#renewDue = false
    this.#log.applied(value, lifetime, arrival)
    this.#schedule(Math.max(0, lifetime.renewAt - now))
    const store = this.#options.store
    if (store && arrival !== 'loaded' && lifetime.persist) this.#queueStore(store, () => store.save(value))
  }

  #schedule(delayMs: number): void {
    this.#cancelTimer()
    if (this.#closed) return
    const { clock } = this.#options.runtime
    this.#renewAt = clock.now() + delayMs
    // A certificate's life may exceed what one timer holds (24.8 days): waited in steps.
    this.#timer = setLongTimer(clock, delayMs, () => this.#renewalDue())
  }

  #cancelTimer(): void {
    this.#timer?.cancel()
    this.#timer = undefined
    this.#renewAt = undefined
  }

  /** The renewal point: renew now, unless the value went unused and is not `renewWhenIdle` (then on next use). */
  #renewalDue(): void {
    this.#timer = undefined
    this.#renewAt = undefined
    if (this.#closed) return
    if (this.#current?.lifetime.renewWhenIdle || this.#usedSinceApply) {
      this.#renew()
      return
    }
    this.#renewDue = true
    this.#log.renewalDeferred()
  }

  #renew(): void {
    this.#cancelTimer()
    if (this.#closed) return
    const generation = this.#generation
    this.#fetch('renewed').then(
      () => {
        this.#failures = 0
      },
      (error: unknown) => {
        if (this.#closed) return
        if (!this.#options.fetchOutlivesInvalidation && generation !== this.#generation) return
        this.#failures++
        const serving = this.#usable()
        this.#log.renewalFailed(error, this.#failures, serving?.value)
        // Nothing usable left: the next caller fetches in the foreground.
        if (!serving || this.#timer) return
        const { clock, random } = this.#options.runtime
        const delay = this.#policy.retryDelay(this.#failures, serving.lifetime, clock.now(), random)
        if (delay === undefined) return
        // A retry of a renewal that was wanted: not subject to the "unused" check again.
        this.#usedSinceApply = true
        this.#schedule(Math.max(0, Math.round(delay)))
      },
    )
  }

  #loadOnce(): Promise<void> {
    this.#storeLoad ??= this.#loadStore().finally(() => {
      this.#storeLoaded = true
    })
    return this.#storeLoad
  }

  async #loadStore(): Promise<void> {
    const store = this.#options.store
    if (!store) return
    const seq = ++this.#seq
    const generation = this.#generation
    const value = await store.load()
    if (value !== undefined) this.#apply(seq, generation, value, 'loaded')
  }

  /** Store operations run one at a time, in order, so a removal never undoes a later save. */
  #queueStore(store: ValueStore<T>, operation: () => Promise<void>): void {
    this.#storeOps = this.#storeOps.then(operation).catch((error: unknown) => store.updateFailed(error))
  }
}

/** The FIC leg-1 lines. */
function defaultLog<T>(options: RenewingValueOptions<T>): RenewalLog<T> {
  const { runtime, identity, label } = options
  return {
    applied(value) {
      runtime.logger.debug(
        { identity, credential: label, expires_on: new Date(options.expiresOn(value)).toISOString() },
        'credential renewed',
      )
    },
    discarded() {},
    renewalFailed(error, failures, serving) {
      runtime.logger.warn(
        {
          identity,
          credential: label,
          failures,
          error: describeError(error),
          serving: serving !== undefined,
        },
        'background credential renewal failed',
      )
    },
    renewalDeferred() {},
  }
}

function closedError(options: { identity: string }): SidecarError {
  return new SidecarError('shutting_down', `identity ${options.identity}: credential is closed`)
}
