import type { Dispatcher } from 'undici'
import type { Clock, Random } from './clock.ts'
import type { Logger } from './log.ts'
import type { Metrics } from './metrics.ts'
import type { RetryAfterHints } from './retry-after.ts'

/**
 * An undici Dispatcher made on the first request that needs it (`upstream/undici.ts`): undici is
 * loaded then, not at start.
 */
export interface DeferredDispatcher {
  get(): Promise<Dispatcher>
  close(): Promise<void>
}

/**
 * What every component needs from the outside world, injected from the composition root
 * (`daemon/compose.ts`). Tests build one with a fake clock and loopback servers.
 */
export interface Runtime {
  clock: Clock
  random: Random
  logger: Logger
  metrics: Metrics
  /** Plain HTTP(S) dispatcher for IMDS and non-mTLS Entra calls, made on first use. */
  dispatcher: DeferredDispatcher
  /** Extra trusted CA certificates (PEM) for Entra and mTLS endpoints (`upstream.caFile`). */
  extraCaPem: string[]
  /** Per-attempt timeout for upstream calls. */
  timeoutMs: number
  /** Upstream's Retry-After, from the retry loop to the request deadline's 503 (optional in tests). */
  retryAfterHints?: RetryAfterHints
}
