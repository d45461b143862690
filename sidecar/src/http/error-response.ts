import { isSidecarError, SidecarError } from '../core/errors.ts'

/** The OAuth-shaped error body every route answers with (contract §3). */
export interface ErrorBody {
  error: string
  error_description: string
  correlation_id: string
  error_codes?: number[]
  trace_id?: string
  upstream_status?: number
}

/** Our own back-off when upstream gave none: IMDS's retry schedule is 1 + 2 + 4 s. */
const defaultRetryAfterSeconds = 5

/**
 * The one place an error becomes an HTTP answer. Upstream `error` is passed through when upstream
 * said the request is wrong; AADSTS `error_codes`, `trace_id` and `correlation_id` are passed
 * through so a caller can take them to Entra support. Unknown errors are 500 with no detail:
 * their messages could carry anything.
 */
export function errorResponse(error: unknown, correlationId: string): Response {
  const e = isSidecarError(error)
    ? error
    : new SidecarError('internal_error', 'Internal error; see the sidecar log for this correlation_id')
  const body: ErrorBody = {
    error: wireError(e),
    error_description: e.message,
    correlation_id: e.upstream?.correlationId ?? correlationId,
  }
  if (e.upstream?.errorCodes?.length) body.error_codes = e.upstream.errorCodes
  if (e.upstream?.traceId) body.trace_id = e.upstream.traceId
  if (e.upstream?.status !== undefined) body.upstream_status = e.upstream.status
  const headers: Record<string, string> = {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
  }
  // Every 503 says when to come back (contract §3): upstream's value when it sent one, else our
  // own back-off. Without it clients retry at once, which is what a struggling upstream needs least.
  if (e.status === 503)
    headers['retry-after'] = String(Math.max(1, Math.ceil(e.retryAfterSeconds ?? defaultRetryAfterSeconds)))
  if (e.code === 'unauthorized') headers['www-authenticate'] = 'X-IDENTITY-HEADER'
  return new Response(JSON.stringify(body), { status: e.status, headers })
}

function wireError(e: SidecarError): string {
  if (e.code === 'upstream_bad_request') return e.upstream?.error ?? 'invalid_request'
  return e.code
}
