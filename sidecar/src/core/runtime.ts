import type { Dispatcher } from 'undici'
import type { Clock, Random } from './clock.ts'
import type { Logger } from './log.ts'
import type { Metrics } from './metrics.ts'
import type { RetryAfterHints } from './retry-after.ts'

/**
 * What every component needs from the outside world, injected from the composition root
 * (`daemon/compose.ts`). Tests build one with a fake clock and loopback servers.
 */
export interface Runtime {
  clock: Clock
  random: Random
  logger: Logger
  metrics: Metrics
  /** Plain HTTP(S) dispatcher for IMDS and non-mTLS Entra calls. */
  dispatcher: Dispatcher
  /** Extra trusted CA certificates (PEM) for Entra and mTLS endpoints (`upstream.caFile`). */
  extraCaPem: string[]
  /** Per-attempt timeout for upstream calls. */
  timeoutMs: number
  /** Upstream's Retry-After, from the retry loop to the request deadline's 503 (optional in tests). */
  retryAfterHints?: RetryAfterHints
}
