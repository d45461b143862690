import { describeError, SidecarError } from '../core/errors.ts'
import { LRUCache } from 'lru-cache'
import type { Clock, Random } from '../core/clock.ts'
import type { Logger } from '../core/log.ts'
import type { Metrics } from '../core/metrics.ts'
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
}

type Acquire = (signal: AbortSignal) => Promise<AcquiredToken>

/** What a fetch runs: the acquisition, and whether it is a forced refresh (never answered from stale). */
interface FetchContext {
  acquire: Acquire
  forced: boolean
  /** Set when this context's acquisition really ran (lru-cache may hand back another fetch in flight). */
  ran?: boolean
}

interface ForcedRefresh {
  startedAt: number
  settled: boolean
  promise: Promise<CachedToken>
}

const twoHoursMs = 2 * 3600_000
const minTtlMs = 1

/**
 * Token cache on lru-cache: `fetchMethod` gives one upstream call per key however many callers
 * wait (single-flight), stale-while-refresh between `refreshAt` and `servableUntil`, and the
 * still-valid token keeps being served when a refresh fails. Bounded by `maxTokens` (LRU).
 */
export class TokenCache {
  readonly #clock: Clock
  readonly #random: Random
  readonly #logger: Logger
  readonly #metrics: Metrics
  readonly #bufferMs: number
  readonly #cooldownMs: number
  readonly #forcedIntervalMs: number
  readonly #forced = new Map<string, ForcedRefresh>()
  readonly #lru: LRUCache<string, CachedToken, FetchContext>

  constructor(options: TokenCacheOptions) {
    this.#clock = options.clock
    this.#random = options.random
    this.#logger = options.logger
    this.#metrics = options.metrics
    this.#bufferMs = options.expiryBufferMs ?? 5 * 60_000
    this.#cooldownMs = options.refreshCooldownMs ?? 30_000
    this.#forcedIntervalMs = options.forcedRefreshIntervalMs ?? 5_000
    this.#lru = new LRUCache<string, CachedToken, FetchContext>({
      max: options.maxTokens,
      // lru-cache's TTL marks the entry stale at refreshAt; our own check enforces servableUntil.
      ttl: 3600_000,
      ttlResolution: 0,
      perf: { now: () => this.#clock.now() },
      allowStale: true,
      noDeleteOnFetchRejection: false,
      fetchMethod: (key, stale, { signal, options: fetchOptions, context }) =>
        this.#refresh(key, stale, signal, fetchOptions, context),
      // An entry leaving the cache (evicted by the bound, invalidated, cleared; not replaced by its
      // refresh) takes its metric series along, so series stay bounded by maxTokens (issue 21).
      dispose: (_token, key, reason) => {
        if (reason !== 'set') this.#metrics.forgetToken(key)
      },
    })
  }

  /**
   * Returns a servable token for `key`, calling `acquire` (once per key at a time) when there is
   * none or it is due for refresh. A due-but-valid token is returned at once while the refresh runs.
   */
  async get(key: string, acquire: Acquire): Promise<CachedToken> {
    const hit = this.peekFresh(key)
    if (hit) return hit
    const cached = this.#lru.peek(key, { allowStale: true })
    const servable = cached !== undefined && this.#clock.now() < cached.servableUntil
    this.#metrics.countCacheEvent(servable ? 'refresh' : 'miss')
    const result = await this.#lru.fetch(key, {
      context: { acquire, forced: false },
      allowStale: servable,
      forceRefresh: true,
    })
    if (result === undefined || this.#clock.now() >= result.servableUntil) {
      // Only reachable if the upstream answered with a token that expired on the way.
      throw expiredOnArrival()
    }
    return result
  }

  /** The token cached for `key`, servable or not, without touching LRU order or refreshing. */
  peek(key: string): CachedToken | undefined {
    return this.#lru.peek(key, { allowStale: true })
  }

  /**
   * Replaces the entry for `key` with a token fetched now (CAE: the resource refused the cached
   * one), never answering from the cache. Rate-limited per entry: while one forced refresh runs,
   * and for `forcedRefreshIntervalMs` after it started, every caller gets that refresh's answer
   * (token or error), so no caller can turn forced refreshes into an upstream storm. A failure does
   * not fall back to the cached token: it is the one that was refused.
   */
  forceRefresh(key: string, acquire: Acquire): Promise<CachedToken> {
    const now = this.#clock.now()
    const last = this.#forced.get(key)
    if (last && (!last.settled || now - last.startedAt < this.#forcedIntervalMs)) {
      this.#metrics.countCacheEvent('forced_refresh_shared')
      return last.promise
    }
    this.#metrics.countCacheEvent('forced_refresh')
    const promise = this.#forceFetch(key, acquire)
    const entry: ForcedRefresh = { startedAt: now, settled: false, promise }
    this.#forced.set(key, entry)
    // Forget it after the window so the map does not grow with every key ever refreshed.
    const forget = () => {
      entry.settled = true
      this.#clock.setTimer(this.#forcedIntervalMs, () => {
        if (this.#forced.get(key) === entry) this.#forced.delete(key)
      })
    }
    promise.then(forget, forget)
    return promise
  }

  async #forceFetch(key: string, acquire: Acquire): Promise<CachedToken> {
    const context: FetchContext = { acquire, forced: true }
    // A background refresh already in flight is handed back by lru-cache instead of ours: wait for
    // it, then ask again, so that the answer really comes from a request made after the refusal.
    for (let attempt = 0; attempt < 3; attempt++) {
      let result: CachedToken | undefined
      try {
        result = await this.#lru.fetch(key, { context, allowStale: false, forceRefresh: true })
      } catch (error) {
        // Another caller's refresh failing is not ours to report: run our own next.
        if (context.ran) throw error
        continue
      }
      if (context.ran) {
        if (result === undefined) throw new Error('token cache produced no token')
        return result
      }
    }
    throw new Error('token cache could not start a forced refresh')
  }

  /**
   * The token for `key` when it is servable and not yet due for refresh (a hit, counted as one),
   * else undefined: synchronous, no timer, no promise, so a hit can be answered on the spot.
   */
  peekFresh(key: string): CachedToken | undefined {
    const cached = this.#lru.peek(key, { allowStale: true })
    // lru-cache's TTL runs out at refreshAt (or at the end of a failed refresh's cooldown).
    if (
      cached === undefined ||
      this.#clock.now() >= cached.servableUntil ||
      this.#lru.getRemainingTTL(key) <= 0
    )
      return undefined
    this.#metrics.countCacheEvent('hit')
    this.#lru.get(key) // touch for LRU order
    return cached
  }

  /**
   * Drops the entry for `key` if it still holds `accessToken` (a resource refused it), so the next
   * `get` fetches a fresh one. A newer token already in its place is kept: many callers may report
   * the same refused token at once.
   */
  invalidate(key: string, accessToken: string): void {
    if (this.#lru.peek(key, { allowStale: true })?.accessToken === accessToken) this.#lru.delete(key)
  }

  /** Drops every entry whose key starts with `prefix` (e.g. all tokens of an identity). */
  deletePrefix(prefix: string): void {
    for (const key of [...this.#lru.keys()]) if (key.startsWith(prefix)) this.#lru.delete(key)
  }

  get size(): number {
    return this.#lru.size
  }

  clear(): void {
    this.#lru.clear()
  }

  async #refresh(
    key: string,
    stale: CachedToken | undefined,
    signal: AbortSignal,
    fetchOptions: LRUCache.FetcherFetchOptions<string, CachedToken, FetchContext>,
    context: FetchContext,
  ): Promise<CachedToken> {
    const started = this.#clock.now()
    context.ran = true
    try {
      const token = this.#toCached(await context.acquire(signal))
      // Evicted or deleted while fetching: lru-cache drops this answer, so drop its series too
      // (unless the key was asked for again meanwhile and holds a newer token).
      if (signal.aborted && this.peek(key) === undefined) this.#metrics.forgetToken(key)
      fetchOptions.ttl = Math.max(minTtlMs, token.refreshAt - this.#clock.now())
      // Successful requests are logged at debug; a token fetched from upstream stays visible at info.
      this.#logger.info(
        {
          key: redactKey(key),
          event: stale ? 'refresh' : 'miss',
          ms: this.#clock.now() - started,
          refresh_at: new Date(token.refreshAt).toISOString(),
        },
        'token acquired from upstream',
      )
      return token
    } catch (error) {
      const now = this.#clock.now()
      if (stale && now < stale.servableUntil && !context.forced) {
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
        fetchOptions.ttl = Math.max(minTtlMs, Math.min(this.#cooldownMs, stale.servableUntil - now))
        return stale
      }
      // lru-cache deletes the entry on a rejected fetch (without calling dispose): no series either.
      if (!signal.aborted || this.peek(key) === undefined) this.#metrics.forgetToken(key)
      throw error
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
