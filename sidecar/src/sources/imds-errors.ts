import { SidecarError, type UpstreamErrorDetail } from '../errors.ts'
import type { HttpResponse } from '../net/http.ts'

/**
 * Turns a non-2xx IMDS answer into a SidecarError. IMDS error bodies are `{error, error_description}`
 * or sometimes `{message, correlationId}`; 400 means the request is wrong (identity not found,
 * bad resource), 5xx/429/404/410 after retries mean IMDS is not available now.
 */
export function imdsFailure(res: HttpResponse, endpoint: string): SidecarError {
  const body = safeJson(res.text)
  const error = str(body?.['error'])
  const description = str(body?.['error_description']) ?? str(body?.['message'])
  const upstream: UpstreamErrorDetail = { endpoint, status: res.status }
  if (error) upstream.error = error
  if (description) upstream.errorDescription = description
  const correlationId = str(body?.['correlation_id']) ?? str(body?.['correlationId'])
  if (correlationId) upstream.correlationId = correlationId
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

function safeJson(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text)
    return value && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined
  } catch {
    return undefined
  }
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}
