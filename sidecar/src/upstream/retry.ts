import type { Clock, Random } from '../core/clock.ts'
import { isSidecarError, type ErrorReason } from '../core/errors.ts'
import { parseRetryAfterMs, type HttpResponse } from './http.ts'
import { spread } from '../core/jitter.ts'

/** Why an attempt did not produce a final answer. */
export type AttemptFailure =
  | { kind: 'status'; status: number; retryAfterMs: number | undefined }
  | { kind: 'transport'; reason: ErrorReason }

export interface RetryPolicy {
  /** Whether this failure may be retried at all. */
  isRetryable(failure: AttemptFailure): boolean
  /**
   * Base delay before retry number `retry` (1-based), given the first failure of the sequence;
   * undefined when retries are exhausted. Jitter and Retry-After are applied by `sendWithRetry`.
   */
  baseDelayMs(retry: number, first: AttemptFailure): number | undefined
}

/**
 * IMDS (MSAL's ImdsRetryPolicy): 404, 408, 410, 429, 5xx and timeouts/connection errors retry
 * 3 times at 1 s, 2 s, 4 s; when the first failure is 410 (IMDS is restarting), 7 times 10 s apart.
 * `retryNotFound: false` is for probes where 404 means "this host has no such endpoint".
 */
export function imdsRetryPolicy(options: { retryNotFound?: boolean } = {}): RetryPolicy {
  const retryNotFound = options.retryNotFound ?? true
  return {
    isRetryable(failure) {
      if (failure.kind === 'transport')
        return failure.reason === 'timeout' || failure.reason === 'connect_failure'
      const s = failure.status
      return (s === 404 && retryNotFound) || s === 408 || s === 410 || s === 429 || (s >= 500 && s <= 599)
    },
    baseDelayMs(retry, first) {
      if (first.kind === 'status' && first.status === 410) return retry <= 7 ? 10_000 : undefined
      return retry <= 3 ? 1000 * 2 ** (retry - 1) : undefined
    },
  }
}

/** Entra token endpoint: one retry after 1 s on 5xx or a connection failure. 429 is not retried. */
export function entraRetryPolicy(): RetryPolicy {
  return {
    isRetryable(failure) {
      if (failure.kind === 'transport')
        return failure.reason === 'connect_failure' || failure.reason === 'timeout'
      return failure.status >= 500 && failure.status <= 599
    },
    baseDelayMs(retry) {
      return retry <= 1 ? 1000 : undefined
    },
  }
}

/** No retries: the caller handles failures itself. */
export const noRetryPolicy: RetryPolicy = { isRetryable: () => false, baseDelayMs: () => undefined }

export interface RetryContext {
  clock: Clock
  random: Random
  signal?: AbortSignal
  /** Longest Retry-After honoured; a longer one ends the retries (the caller reports it). Default 60 s. */
  maxRetryAfterMs?: number
  /** Observability hook, called before each sleep. */
  onRetry?: (info: { retry: number; delayMs: number; failure: AttemptFailure }) => void
}

/**
 * Runs `attempt` until it yields a non-retryable answer or the policy gives up. Returns the last
 * HTTP response (which may still be a failure status: the caller maps it), or rethrows the last
 * transport error. Delays get ±20 % jitter; a server's Retry-After wins when it is longer.
 */
export async function sendWithRetry(
  attempt: () => Promise<HttpResponse>,
  policy: RetryPolicy,
  ctx: RetryContext,
): Promise<HttpResponse> {
  const maxRetryAfterMs = ctx.maxRetryAfterMs ?? 60_000
  let first: AttemptFailure | undefined
  for (let retry = 1; ; retry++) {
    let failure: AttemptFailure
    let outcome: { res: HttpResponse } | { error: unknown }
    try {
      const res = await attempt()
      if (res.status < 400) return res
      failure = {
        kind: 'status',
        status: res.status,
        retryAfterMs: parseRetryAfterMs(res.headers['retry-after'], ctx.clock.now()),
      }
      outcome = { res }
    } catch (error) {
      if (!isSidecarError(error) || !error.reason) throw error
      failure = { kind: 'transport', reason: error.reason }
      outcome = { error }
    }
    first ??= failure
    const base = policy.isRetryable(failure) ? policy.baseDelayMs(retry, first) : undefined
    const retryAfter = failure.kind === 'status' ? failure.retryAfterMs : undefined
    if (base === undefined || (retryAfter !== undefined && retryAfter > maxRetryAfterMs)) {
      if ('res' in outcome) return outcome.res
      throw outcome.error
    }
    const jittered = Math.round(spread(base, 0.2, ctx.random))
    const delayMs = retryAfter !== undefined ? Math.max(retryAfter, jittered) : jittered
    ctx.onRetry?.({ retry, delayMs, failure })
    await ctx.clock.sleep(delayMs, ctx.signal)
  }
}
