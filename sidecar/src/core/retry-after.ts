import { AsyncLocalStorage } from 'node:async_hooks'

/**
 * The longest Retry-After passed on to a caller, in seconds. Upstream's header is not trusted
 * blindly: a huge value (or an HTTP-date years ahead) would park every SDK behind this sidecar for
 * that long; five minutes is longer than any back-off IMDS or Entra asks for in practice.
 */
export const maxRetryAfterSeconds = 300

/** Upstream's Retry-After (milliseconds) as whole seconds for a caller: at least 1, at most 300. */
export function retryAfterSecondsFor(retryAfterMs: number): number {
  return Math.min(maxRetryAfterSeconds, Math.max(1, Math.ceil(retryAfterMs / 1000)))
}

/** What upstream last asked for while one token fetch retried. */
export class RetryAfterHint {
  #seconds: number | undefined

  note(retryAfterMs: number): void {
    this.#seconds = retryAfterSecondsFor(retryAfterMs)
  }

  /** Upstream's last Retry-After (seconds, bounded), or undefined when it sent none. */
  get seconds(): number | undefined {
    return this.#seconds
  }
}

/**
 * Carries a fetch's `RetryAfterHint` from the token service down to the retry loop without
 * threading it through every layer in between: the token service runs a fetch inside `run`, the
 * upstream client calls `note` when upstream answers with a Retry-After and a retry follows. When
 * the request deadline passes first, the 503 says upstream's value, not only our own back-off
 * (contract §3). One instance per runtime.
 */
export class RetryAfterHints {
  readonly #storage = new AsyncLocalStorage<RetryAfterHint>()

  run<T>(hint: RetryAfterHint, work: () => T): T {
    return this.#storage.run(hint, work)
  }

  note(retryAfterMs: number): void {
    this.#storage.getStore()?.note(retryAfterMs)
  }
}

/**
 * The fetch one request waits on (the token cache points it at the fetch it starts or joins), so
 * that a request-deadline 503 can quote what upstream asked for meanwhile.
 */
export class UpstreamWait {
  #hint: RetryAfterHint | undefined

  watch(hint: RetryAfterHint): void {
    this.#hint = hint
  }

  /** Upstream's last Retry-After for that fetch (seconds, bounded), or undefined. */
  get retryAfterSeconds(): number | undefined {
    return this.#hint?.seconds
  }
}
