import { describeError, SidecarError } from '../core/errors.ts'
import { LRUCache } from 'lru-cache'
import type { Clock, Random } from '../core/clock.ts'
import type { Logger } from '../core/log.ts'
import type { Metrics } from '../core/metrics.ts'
import { RetryAfterHint, type RetryAfterHints, type UpstreamWait } from '../core/retry-after.ts'
import type { AcquiredToken } from '../model/token.ts'
import { upToEarlier } from '../core/jitter.ts'

/** A token as cached: what upstream returned plus when we refresh it and when we stop serving it. */
export interface CachedToken extends AcquiredToken {
  /** Epoch ms: from then on the token is served while a background refresh runs. */
  refreshAt: number
  /** Epoch ms: expiresOn minus the expiry buffer (a tenth of the life for short tokens); never served at or after this. */
  servableUntil: number
}

export interface TokenCacheOptions {
  clock: Clock
  random: Random
  logger: Logger
  metrics: Metrics
  maxTokens: number
  /** Tokens are not served in their last `expiryBufferMs` (default 5 minutes). */
  expiryBufferMs?: number
  /** After a failed background refresh, wait this long before trying again (default 30 s). */
  refreshCooldownMs?: number
  /**
   * At most one forced refresh (CAE: claims or a refused token's hash) per entry in this window
   * (default 5 s); callers within it share the answer of the one that ran.
   */
  forcedRefreshIntervalMs?: number
  /** Where the upstream clients note a Retry-After while a fetch retries (see `UpstreamWait`). */
  retryAfterHints?: RetryAfterHints
}

/** One upstream fetch; it carries its own cancellation (the identity's closing signal). */
export type Acquire = () => Promise<AcquiredToken>

/** A fetch under way or done, shared by every caller that waits on it. */
interface Flight {
  promise: Promise<CachedToken>
  /** Start order: an answer never overwrites one from a fetch started later. */
  seq: number
  startedAt: number
  settled: boolean
  /** What upstream asked for (Retry-After) while this fetch retried. */
  hint: RetryAfterHint
}

/** One cache slot: its token, the fetch in flight, and the last forced refresh. */
interface Entry {
  token: CachedToken | undefined
  /** When a background refresh may start: the token's refreshAt, or the end of a failed refresh's cooldown. */
  nextRefreshAt: number
  /** The newest fetch in flight: a caller that needs a token joins it (single-flight). */
  flight: Flight | undefined
  /** The last forced refresh: shared while it runs and for `forcedRefreshIntervalMs` after it started. */
  forced: Flight | undefined
  /** `seq` of the newest fetch that settled into this entry (written or refused). */
  seq: number
}

const twoHoursMs = 2 * 3600_000

/**
 * The token cache: one refresh engine per entry. A caller that needs a fetch joins the one in
 * flight (single-flight); a token due for refresh is served while one runs behind it; a failed
 * refresh keeps serving the still-valid token and tries again after a cooldown; a forced refresh
 * (CAE) starts its own fetch at once, rate-limited per entry, and an answer from a fetch started
 * earlier never overwrites a later one (`seq`, as jose's remote JWKS). lru-cache only bounds the
 * entries by `maxTokens` (least recently used first).
 */
export class TokenCache {
  readonly #clock: Clock
  readonly #random: Random
  readonly #logger: Logger
  readonly #metrics: Metrics
  readonly #bufferMs: number
  readonly #cooldownMs: number
  readonly #forcedIntervalMs: number
  readonly #hints: RetryAfterHints | undefined
  readonly #lru: LRUCache<string, Entry>
  #seq = 0

  constructor(options: TokenCacheOptions) {
    this.#clock = options.clock
    this.#random = options.random
    this.#logger = options.logger
    this.#metrics = options.metrics
    this.#bufferMs = options.expiryBufferMs ?? 5 * 60_000
    this.#cooldownMs = options.refreshCooldownMs ?? 30_000
    this.#forcedIntervalMs = options.forcedRefreshIntervalMs ?? 5_000
    this.#hints = options.retryAfterHints
    this.#lru = new LRUCache<string, Entry>({
      max: options.maxTokens,
      // An entry leaving the cache (evicted by the bound, invalidated) takes its metric series
      // along, so series stay bounded by maxTokens (issue 21).
      dispose: (_entry, key, reason) => {
        if (reason !== 'set') this.#metrics.forgetToken(key)
      },
    })
  }

  /**
   * The token for `key` when it is servable and not yet due for refresh (a hit, counted as one),
   * else undefined: synchronous, no timer, no promise, so a hit can be answered on the spot.
   */
  fresh(key: string): CachedToken | undefined {
    const entry = this.#lru.get(key)
    const token = entry?.token
    const now = this.#clock.now()
    if (entry === undefined || token === undefined) return undefined
    if (now >= token.servableUntil || now >= entry.nextRefreshAt) return undefined
    this.#metrics.countCacheEvent('hit')
    return token
  }

  /**
   * A servable token for `key`, calling `acquire` (once per key at a time) when there is none or
   * it is due for refresh. A due-but-valid token is returned at once while the refresh runs.
   * `wait` is pointed at the fetch this call waits on.
   */
  async get(key: string, acquire: Acquire, wait?: UpstreamWait): Promise<CachedToken> {
    const entry = this.#lru.get(key) ?? this.#add(key)
    const cached = entry.token
    const now = this.#clock.now()
    if (cached !== undefined && now < cached.servableUntil) {
      if (now < entry.nextRefreshAt) {
        this.#metrics.countCacheEvent('hit')
        return cached
      }
      this.#metrics.countCacheEvent('refresh')
      if (entry.flight === undefined) this.#start(key, entry, acquire, false)
      return cached
    }
    this.#metrics.countCacheEvent('miss')
    const flight = entry.flight ?? this.#start(key, entry, acquire, false)
    wait?.watch(flight.hint)
    const token = await flight.promise
    // Only reachable if the upstream answered with a token that expired on the way.
    if (this.#clock.now() >= token.servableUntil) throw expiredOnArrival()
    return token
  }

  /**
   * Replaces the entry for `key` with a token fetched now (CAE: the resource refused the cached
   * one), never answering from the cache nor from a fetch started before this call. Rate-limited
   * per entry: while one forced refresh runs, and for `forcedRefreshIntervalMs` after it started,
   * every caller gets that refresh's answer (token or error), so no caller can turn forced
   * refreshes into an upstream storm. A failure does not fall back to the cached token: it is the
   * one that was refused.
   */
  forceRefresh(key: string, acquire: Acquire, wait?: UpstreamWait): Promise<CachedToken> {
    const entry = this.#lru.get(key) ?? this.#add(key)
    const last = entry.forced
    if (last && (!last.settled || this.#clock.now() - last.startedAt < this.#forcedIntervalMs)) {
      this.#metrics.countCacheEvent('forced_refresh_shared')
      wait?.watch(last.hint)
      return last.promise
    }
    this.#metrics.countCacheEvent('forced_refresh')
    const flight = this.#start(key, entry, acquire, true)
    entry.forced = flight
    wait?.watch(flight.hint)
    return flight.promise
  }

  /** The token cached for `key`, servable or not, without touching LRU order or refreshing. */
  peek(key: string): CachedToken | undefined {
    return this.#lru.peek(key)?.token
  }

  /**
   * Drops the entry for `key` if it still holds `accessToken` (a resource refused it), so the next
   * `get` fetches a fresh one. A newer token already in its place is kept: many callers may report
   * the same refused token at once.
   */
  invalidate(key: string, accessToken: string): void {
    if (this.#lru.peek(key)?.token?.accessToken === accessToken) this.#lru.delete(key)
  }

  get size(): number {
    return this.#lru.size
  }

  #add(key: string): Entry {
    const entry: Entry = { token: undefined, nextRefreshAt: 0, flight: undefined, forced: undefined, seq: 0 }
    this.#lru.set(key, entry)
    return entry
  }

  /** Starts a fetch for `entry` and makes it the one later callers join. */
  #start(key: string, entry: Entry, acquire: Acquire, forced: boolean): Flight {
    const flight: Flight = {
      // Set just below: the entry must point at the flight before its fetch can settle.
      promise: undefined as unknown as Promise<CachedToken>,
      seq: ++this.#seq,
      startedAt: this.#clock.now(),
      settled: false,
      hint: new RetryAfterHint(),
    }
    entry.flight = flight
    flight.promise = this.#run(key, entry, flight, acquire, forced)
    // A background refresh has no caller awaiting it; every caller that does sees the rejection.
    flight.promise.catch(() => {})
    return flight
  }

  async #run(
    key: string,
    entry: Entry,
    flight: Flight,
    acquire: Acquire,
    forced: boolean,
  ): Promise<CachedToken> {
    const stale = entry.token
    try {
      const acquired = await (this.#hints ? this.#hints.run(flight.hint, acquire) : acquire())
      const token = this.#toCached(acquired)
      if (flight.seq > entry.seq) {
        entry.seq = flight.seq
        entry.token = token
        entry.nextRefreshAt = token.refreshAt
      }
      // Evicted or invalidated while fetching: the answer goes to its callers only, and its series
      // (recorded by the fetch) goes too, unless the key was asked for again meanwhile.
      if (!this.#lru.has(key)) this.#metrics.forgetToken(key)
      // Successful requests are logged at debug; a token fetched from upstream stays visible at info.
      this.#logger.info(
        {
          key: redactKey(key),
          event: stale ? 'refresh' : 'miss',
          ms: this.#clock.now() - flight.startedAt,
          refresh_at: new Date(token.refreshAt).toISOString(),
        },
        'token acquired from upstream',
      )
      return token
    } catch (error) {
      const now = this.#clock.now()
      if (!forced && stale !== undefined && entry.token === stale && now < stale.servableUntil) {
        // Keep serving the valid token; try again after a cooldown, not on every request.
        this.#metrics.countCacheEvent('refresh_failure')
        this.#logger.warn(
          {
            key: redactKey(key),
            err: describeError(error),
            servable_until: new Date(stale.servableUntil).toISOString(),
          },
          'token refresh failed; serving the cached token until it expires',
        )
        entry.nextRefreshAt = Math.min(now + this.#cooldownMs, stale.servableUntil)
        return stale
      }
      if (flight.seq > entry.seq) {
        // Nothing older may land here now: a forced refresh failing means the refused token is gone.
        entry.seq = flight.seq
        entry.token = undefined
        this.#metrics.forgetToken(key)
        // A failed cold fetch leaves no slot behind; a forced one keeps its record for its window.
        if (entry.forced === undefined && this.#lru.peek(key) === entry) this.#lru.delete(key)
      }
      throw error
    } finally {
      flight.settled = true
      if (entry.flight === flight) entry.flight = undefined
    }
  }

  /** Refresh at refresh_in when upstream gave it, else at half-life for long tokens, with jitter. */
  #toCached(token: AcquiredToken): CachedToken {
    const now = this.#clock.now()
    // A token that lives shorter than its buffer allows (a PoP token bound to a minute-long
    // certificate) keeps its last tenth instead.
    const servableUntil = token.expiresOn - Math.min(this.#bufferMs, (token.expiresOn - now) / 10)
    if (servableUntil <= now) throw expiredOnArrival()
    const lifetime = token.expiresOn - now
    let refreshAt =
      token.refreshOn ??
      (lifetime >= twoHoursMs
        ? now + lifetime / 2
        : Math.max(now + lifetime / 2, servableUntil - this.#bufferMs))
    // Jitter: up to 10 % earlier, so many tokens acquired together do not refresh together.
    refreshAt = now + upToEarlier(Math.max(0, refreshAt - now), 0.1, this.#random)
    refreshAt = Math.round(Math.max(now, Math.min(refreshAt, servableUntil)))
    return { ...token, refreshAt, servableUntil }
  }
}

/** A token with no servable life left is upstream's malformed answer (502), not a daemon failure. */
function expiredOnArrival(): SidecarError {
  return new SidecarError('upstream_error', 'upstream answered a token that expired on arrival', {
    reason: 'malformed_response',
  })
}

/** Cache keys hold identity, type, thumbprint and scope: no secrets, but keep logs short. */
function redactKey(key: string): string {
  return key.length > 200 ? `${key.slice(0, 200)}…` : key
}
