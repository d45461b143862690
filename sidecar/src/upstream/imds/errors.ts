import { SidecarError, type UpstreamErrorDetail } from '../../core/errors.ts'
import { retryAfterSecondsFor } from '../../core/retry-after.ts'
import { parseRetryAfterMs, type HttpResponse } from '../http.ts'
import { upstreamErrorDetail } from '../error-detail.ts'

/** What an IMDS error answer says (the shared parser: IMDS v1 relays Entra's AADSTS body as is). */
export function imdsErrorDetail(endpoint: string, res: HttpResponse): UpstreamErrorDetail {
  return upstreamErrorDetail(res, endpoint)
}

/** When IMDS asks us to back off without saying how long. */
const DEFAULT_RETRY_AFTER_SECONDS = 5

/**
 * Turns a final (after retries) IMDS error answer, v1 or v2, into a SidecarError: 400 means the
 * request is wrong (identity not found, bad resource); 429, 5xx, 404, 410 and 408 mean IMDS is not
 * available now, with the Retry-After it sent (seconds or HTTP-date, 1 to 300 s) or 5 s; anything else is a
 * refusal. IMDS v2 answers its own meaning of 404 and 400 before asking here.
 */
export function imdsFailure(res: HttpResponse, endpoint: string, now: number): SidecarError {
  const upstream = imdsErrorDetail(endpoint, res)
  const said = upstream.errorDescription ?? upstream.error ?? `status ${res.status}`
  const status = res.status
  if (status === 400 && saysRequestIsWrong(upstream.error, said)) {
    const identityNotFound = /identity not found/i.test(said)
    return new SidecarError('upstream_bad_request', `${endpoint} refused the request: ${said}`, {
      ...(identityNotFound ? { reason: 'identity_not_found' as const } : {}),
      upstream,
    })
  }
  if (status === 429 || status >= 500 || status === 404 || status === 410 || status === 408) {
    const retryAfterMs = parseRetryAfterMs(res.headers['retry-after'], now)
    return new SidecarError('upstream_unavailable', `${endpoint} answered ${status} after retries: ${said}`, {
      reason: status === 429 ? 'throttled' : 'server_error',
      upstream,
      retryAfterSeconds:
        retryAfterMs === undefined ? DEFAULT_RETRY_AFTER_SECONDS : retryAfterSecondsFor(retryAfterMs),
    })
  }
  return new SidecarError('upstream_error', `${endpoint} answered ${status}: ${said}`, { upstream })
}

/** The OAuth errors that say the request itself is wrong (contract §3); others are refusals. */
const requestErrors = new Set(['invalid_resource', 'invalid_scope', 'invalid_request'])

/**
 * An IMDS 400 is the caller's problem when its `error` says so, or when it has no OAuth error at
 * all (IMDS's own `{message}` answers: identity not found, bad parameter). `invalid_client`,
 * `unauthorized_client` and any other error are refusals: 502 (compat routes turn it into 400).
 */
function saysRequestIsWrong(error: string | undefined, said: string): boolean {
  if (/identity not found/i.test(said)) return true
  return error === undefined || requestErrors.has(error)
}
