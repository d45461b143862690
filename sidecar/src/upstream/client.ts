import { performance } from 'node:perf_hooks'
import type { Dispatcher } from 'undici'
import type { SidecarError } from '../core/errors.ts'
import type { Runtime } from '../core/runtime.ts'
import { sendHttp, type HttpRequest, type HttpResponse } from './http.ts'
import { sendWithRetry, type AttemptFailure, type RetryPolicy } from './retry.ts'

/** One logical call to IMDS or Entra: what to send, how to retry, how to report. */
export interface UpstreamCall {
  /** Metrics label, e.g. `imds.token`, `imds.issuecredential`, `entra.mtls.token`. */
  metricsEndpoint: string
  /**
   * Builds the request of one attempt. Called before every attempt, so a request id meant to be
   * fresh per attempt (IMDS v1, Entra) is; one meant per logical call (IMDS v2) is built outside.
   */
  request: () => Omit<HttpRequest, 'timeoutMs' | 'signal'>
  policy: RetryPolicy
  /** Default: the runtime's plain dispatcher. */
  dispatcher?: Dispatcher
  signal?: AbortSignal | undefined
  /** The retry log line, called before each back-off sleep. */
  logRetry: (info: { retry: number; delayMs: number; failure: AttemptFailure }) => void
  /**
   * The error for a final answer that is not a usable one (after retries); undefined accepts it.
   * Transport failures are already `SidecarError`s (`sendHttp`).
   */
  errorFor: (res: HttpResponse) => SidecarError | undefined
}

/**
 * Sends `call` with the runtime's per-attempt timeout, retrying as its policy says, timing every
 * attempt into `metrics.observeUpstream(endpoint, status | 'error', seconds)`. Returns the final
 * answer once `errorFor` accepts it; throws its error, or the last transport error, otherwise.
 */
export async function callUpstream(runtime: Runtime, call: UpstreamCall): Promise<HttpResponse> {
  const { clock, random, metrics, timeoutMs } = runtime
  const dispatcher = call.dispatcher ?? (await runtime.dispatcher.get())
  const signal = call.signal
  const attempt = async (): Promise<HttpResponse> => {
    const started = performance.now()
    let status: number | 'error' = 'error'
    try {
      const res = await sendHttp(dispatcher, { ...call.request(), timeoutMs, ...(signal ? { signal } : {}) })
      status = res.status
      return res
    } finally {
      metrics.observeUpstream(call.metricsEndpoint, status, (performance.now() - started) / 1000)
    }
  }
  const res = await sendWithRetry(attempt, call.policy, {
    clock,
    random,
    ...(signal ? { signal } : {}),
    onRetry: (info) => {
      if (info.failure.kind === 'status' && info.failure.retryAfterMs !== undefined)
        runtime.retryAfterHints?.note(info.failure.retryAfterMs)
      call.logRetry(info)
    },
  })
  const error = call.errorFor(res)
  if (error) throw error
  return res
}
