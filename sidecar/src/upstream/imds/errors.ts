import { SidecarError, type UpstreamErrorDetail } from '../../core/errors.ts'
import type { HttpResponse } from '../http.ts'

/**
 * What an IMDS error answer says. IMDS error bodies are `{error, error_description}` or sometimes
 * `{message, correlationId}` (or not JSON). Only those short fields are kept, clipped: never a
 * body that might echo a CSR or certificate. Shared by IMDS v1 and v2.
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
  const clip = (v: unknown) => (typeof v === 'string' && v !== '' ? v.slice(0, 300) : undefined)
  const error = clip(body['error'])
  const description = clip(body['error_description']) ?? clip(body['message'])
  const correlationId = clip(body['correlation_id']) ?? clip(body['correlationId'])
  if (error) detail.error = error
  if (description) detail.errorDescription = description
  if (correlationId) detail.correlationId = correlationId
  return detail
}

/**
 * Turns a non-2xx IMDS v1 answer into a SidecarError: 400 means the request is wrong (identity
 * not found, bad resource), 5xx/429/404/410/408 after retries mean IMDS is not available now.
 */
export function imdsFailure(res: HttpResponse, endpoint: string): SidecarError {
  const upstream = imdsErrorDetail(endpoint, res)
  const error = upstream.error
  const description = upstream.errorDescription
  const said = description ? `: ${description}` : error ? `: ${error}` : ''

  if (res.status === 400) {
    const identityNotFound = /identity not found/i.test(description ?? '')
    return new SidecarError('upstream_bad_request', `IMDS refused the request (400${said})`, {
      upstream,
      ...(identityNotFound ? { reason: 'identity_not_found' as const } : {}),
    })
  }
  if (
    res.status === 429 ||
    res.status >= 500 ||
    res.status === 404 ||
    res.status === 410 ||
    res.status === 408
  ) {
    const retryAfter = Number(res.headers['retry-after'])
    return new SidecarError(
      'upstream_unavailable',
      `IMDS is not available (${res.status}${said}) after retries`,
      {
        upstream,
        reason: res.status === 429 ? 'throttled' : 'server_error',
        retryAfterSeconds: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : 5,
      },
    )
  }
  return new SidecarError('upstream_error', `IMDS refused the request (${res.status}${said})`, { upstream })
}
