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

/**
 * How a route family words its errors (contract §3):
 * - `oauth`: the native routes, `{error, error_description, correlation_id}` with the code's status;
 * - `compat`: the IMDS and App Service routes, the same body, but a permanent refusal (502) is 400,
 *   as real IMDS answers identity and Entra refusals: the SDKs retry every 5xx (msal-node and
 *   Azure.Identity three times), which would turn one refusal into four upstream calls and seconds;
 * - `problem`: the AgentID container's routes, RFC 7807 problem details with that container's
 *   statuses (400 bad request, 401 when Entra or IMDS refuses the token, 503/504 transient).
 */
export type ErrorDialect = 'oauth' | 'compat' | 'problem'

/** Our own back-off when upstream gave none: IMDS's retry schedule is 1 + 2 + 4 s. */
const defaultRetryAfterSeconds = 5

/**
 * The one place an error becomes an HTTP answer. Upstream `error` is passed through when upstream
 * said the request is wrong; AADSTS `error_codes`, `trace_id` and `correlation_id` are passed
 * through so a caller can take them to Entra support. Unknown errors are 500 with no detail:
 * their messages could carry anything.
 */
export function errorResponse(
  error: unknown,
  correlationId: string,
  dialect: ErrorDialect = 'oauth',
): Response {
  const e = isSidecarError(error)
    ? error
    : new SidecarError('internal_error', 'Internal error; see the sidecar log for this correlation_id')
  if (dialect === 'problem') return problemResponse(e, correlationId)
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
  const status = dialect === 'compat' && e.status === 502 ? 400 : e.status
  return new Response(JSON.stringify(body), { status, headers })
}

/** RFC 7807 `type` links as ASP.NET Core writes them for each status. */
const problemTypes: Record<number, [string, string]> = {
  400: ['https://tools.ietf.org/html/rfc9110#section-15.5.1', 'Bad Request'],
  401: ['https://tools.ietf.org/html/rfc9110#section-15.5.2', 'Unauthorized'],
  403: ['https://tools.ietf.org/html/rfc9110#section-15.5.4', 'Forbidden'],
  404: ['https://tools.ietf.org/html/rfc9110#section-15.5.5', 'Not Found'],
  413: ['https://tools.ietf.org/html/rfc9110#section-15.5.14', 'Content Too Large'],
  415: ['https://tools.ietf.org/html/rfc9110#section-15.5.16', 'Unsupported Media Type'],
  500: [
    'https://tools.ietf.org/html/rfc9110#section-15.6.1',
    'An error occurred while processing your request.',
  ],
  502: ['https://tools.ietf.org/html/rfc9110#section-15.6.3', 'Bad Gateway'],
  503: ['https://tools.ietf.org/html/rfc9110#section-15.6.4', 'Service Unavailable'],
  504: ['https://tools.ietf.org/html/rfc9110#section-15.6.5', 'Gateway Timeout'],
}

/** The RFC 7807 body of the AgentID routes. */
export interface ProblemBody {
  type: string
  title: string
  status: number
  detail: string
  /** Our addition, as on every other route: quote it when reading the sidecar's log. */
  correlation_id: string
  error_codes?: number[]
}

/**
 * The AgentID container answers 401 when MSAL throws `MsalServiceException` (Entra or IMDS refused
 * the token request), whatever upstream's own status; other failures keep their status here
 * (transient ones 503 with Retry-After / 504, a downstream that cannot be reached 502).
 */
function problemStatus(e: SidecarError): number {
  if (e.code === 'upstream_bad_request') return 401
  if (e.code === 'upstream_error' && e.upstream?.status !== undefined) return 401
  if (e.code === 'unknown_identity') return 400
  return e.status
}

function problemResponse(e: SidecarError, correlationId: string): Response {
  const status = problemStatus(e)
  const [type, title] = problemTypes[status] ?? ['about:blank', 'Error']
  const body: ProblemBody = {
    type,
    title,
    status,
    detail: e.message,
    correlation_id: e.upstream?.correlationId ?? correlationId,
  }
  if (e.upstream?.errorCodes?.length) body.error_codes = e.upstream.errorCodes
  const headers: Record<string, string> = {
    'content-type': 'application/problem+json',
    'cache-control': 'no-store',
  }
  if (status === 503)
    headers['retry-after'] = String(Math.max(1, Math.ceil(e.retryAfterSeconds ?? defaultRetryAfterSeconds)))
  return new Response(JSON.stringify(body), { status, headers })
}

function wireError(e: SidecarError): string {
  if (e.code === 'upstream_bad_request') return e.upstream?.error ?? 'invalid_request'
  return e.code
}
