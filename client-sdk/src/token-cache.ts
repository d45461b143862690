export interface TokenCacheOptions<T> {
  /** Clock in epoch ms; injectable so tests can step past `refresh_on`. */
  now: () => number
  /** Until when (epoch ms) a value may be served from the cache. */
  freshUntil: (value: T) => number
}

interface Entry<T> {
  value?: T
  freshUntil: number
  /** Sequence number of the load that produced `value`. */
  seq: number
  pending?: Promise<T>
}

/**
 * Values per key until `freshUntil`, loaded single-flight: concurrent misses for a key share one
 * load. Each load gets a sequence number so a slow older answer never overwrites a newer one
 * (the model is jose's `createRemoteJWKSet`). Failures are not cached: the sidecar already
 * retries upstream, and a cached failure would outlive the sidecar's recovery.
 */
export class TokenCache<T> {
  readonly #entries = new Map<string, Entry<T>>()
  readonly #options: TokenCacheOptions<T>
  #seq = 0

  constructor(options: TokenCacheOptions<T>) {
    this.#options = options
  }

  /** The cached value if still fresh (and not `forceRefresh`), else the result of one shared `load`. */
  get(key: string, load: () => Promise<T>, forceRefresh = false): Promise<T> {
    let entry = this.#entries.get(key)
    if (entry === undefined) {
      entry = { freshUntil: 0, seq: 0 }
      this.#entries.set(key, entry)
    }
    if (!forceRefresh && entry.value !== undefined && this.#options.now() < entry.freshUntil) {
      return Promise.resolve(entry.value)
    }
    // A forced refresh joins a load already under way: that answer is as fresh as a new one.
    if (entry.pending) return entry.pending
    return this.reload(key, load)
  }

  /**
   * Starts a new load for `key` even if one is under way (a CAE refresh must reach the sidecar with
   * its claims, not join a plain load) and caches its answer unless a newer load answered first.
   */
  reload(key: string, load: () => Promise<T>): Promise<T> {
    let entry = this.#entries.get(key)
    if (entry === undefined) {
      entry = { freshUntil: 0, seq: 0 }
      this.#entries.set(key, entry)
    }
    const seq = ++this.#seq
    const current = entry
    const pending = load().then((value) => {
      if (seq > current.seq) {
        current.value = value
        current.freshUntil = this.#options.freshUntil(value)
        current.seq = seq
      }
      return value
    })
    current.pending = pending
    const settle = () => {
      if (current.pending === pending) delete current.pending
    }
    pending.then(settle, settle)
    return pending
  }

  /** The cached value for `key`, fresh or not (undefined when none). */
  peek(key: string): T | undefined {
    return this.#entries.get(key)?.value
  }

  /** Forgets every value; loads under way still answer their callers. */
  clear(): void {
    this.#entries.clear()
  }
}
