import { SidecarError, type UpstreamErrorDetail } from '../../core/errors.ts'
import { parseRetryAfterMs, upstreamText, type HttpResponse } from '../http.ts'

/**
 * What an IMDS error answer says. IMDS error bodies are `{error, error_description}` or sometimes
 * `{message, correlationId}` (or not JSON). Only those short fields are kept, clipped and with
 * anything JWT-shaped blanked (`upstreamText`): never a body that might echo a CSR or certificate. Shared by IMDS v1 and v2.
 */
export function imdsErrorDetail(endpoint: string, res: HttpResponse): UpstreamErrorDetail {
  const detail: UpstreamErrorDetail = { endpoint, status: res.status }
  let body: Record<string, unknown> = {}
  try {
    const parsed: unknown = JSON.parse(res.text)
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed))
      body = parsed as Record<string, unknown>
  } catch {
    // Not JSON: status alone.
  }
  const clip = (v: unknown) => (typeof v === 'string' && v !== '' ? upstreamText(v, 300) : undefined)
  const error = clip(body['error'])
  const description = clip(body['error_description']) ?? clip(body['message'])
  const correlationId = clip(body['correlation_id']) ?? clip(body['correlationId'])
  if (error) detail.error = error
  if (description) detail.errorDescription = description
  if (correlationId) detail.correlationId = correlationId
  return detail
}

/** When IMDS asks us to back off without saying how long. */
const DEFAULT_RETRY_AFTER_SECONDS = 5

/**
 * Turns a final (after retries) IMDS error answer, v1 or v2, into a SidecarError: 400 means the
 * request is wrong (identity not found, bad resource); 429, 5xx, 404, 410 and 408 mean IMDS is not
 * available now, with the Retry-After it sent (seconds or HTTP-date) or 5 s; anything else is a
 * refusal. IMDS v2 answers its own meaning of 404 and 400 before asking here.
 */
export function imdsFailure(res: HttpResponse, endpoint: string, now: number): SidecarError {
  const upstream = imdsErrorDetail(endpoint, res)
  const said = upstream.errorDescription ?? upstream.error ?? `status ${res.status}`
  const status = res.status
  if (status === 400) {
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
        retryAfterMs === undefined
          ? DEFAULT_RETRY_AFTER_SECONDS
          : Math.max(1, Math.ceil(retryAfterMs / 1000)),
    })
  }
  return new SidecarError('upstream_error', `${endpoint} answered ${status}: ${said}`, { upstream })
}
