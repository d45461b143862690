/**
 * One error type for the whole daemon. `code` is a closed set; every code has exactly one HTTP
 * status, and `http/error-response.ts` is the only place that turns an error into a response.
 */
export const errorStatus = {
  /** The caller's request is malformed (query, headers, selector). */
  invalid_request: 400,
  /** The `identity` the caller named is not configured. */
  unknown_identity: 400,
  /** Upstream (IMDS or Entra) said the request itself is wrong: invalid_resource, invalid_scope, identity not found. */
  upstream_bad_request: 400,
  /** Missing or wrong X-IDENTITY-HEADER. */
  unauthorized: 401,
  /** Host header or X-Forwarded-For says the request did not come from a local caller, or callers.allow refused it. */
  forbidden: 403,
  not_found: 404,
  /** /credential for an identity whose credential is not bound to a certificate. */
  no_bound_credential: 409,
  /** A request body larger than the route accepts (the Cloud Shell form: 4 KiB). */
  payload_too_large: 413,
  /** A request body of a type the route does not take. */
  unsupported_media_type: 415,
  /** Upstream refused (invalid_client, attestation demanded) or answered something we cannot use. */
  upstream_error: 502,
  /** Retries exhausted on 5xx/429/connection errors, or the request deadline passed while they go on. */
  upstream_unavailable: 503,
  upstream_timeout: 504,
  /**
   * A credential the operator can fix does not load: a certificate, token or binding store file
   * that is missing, unreadable, refused for its owner or mode, or does not parse; a wrong PKCS#12
   * password. 503 with Retry-After: a rotation may be landing, and the SDKs retry 5xx.
   */
  credential_unavailable: 503,
  shutting_down: 503,
  internal_error: 500,
} as const

export type ErrorCode = keyof typeof errorStatus

/** Finer-grained, machine-readable reasons that do not change the HTTP status. */
export type ErrorReason =
  | 'token_type_mismatch'
  | 'attestation_required'
  | 'imds_v2_unavailable'
  | 'malformed_response'
  | 'invalid_client'
  | 'tls_failure'
  | 'connect_failure'
  | 'timeout'
  | 'identity_not_found'
  | 'throttled'
  | 'server_error'
  | 'pop_identity_on_bearer_route'
  | 'caller_unknown'
  | 'caller_not_allowed'
  /** A GET or HEAD with a body (RFC 9112: 400, and the connection is closed). */
  | 'request_with_body'
  /** Entra refused bound tokens for the tenant (AADSTS3921996): `allowBearerFallback` may serve Bearer. */
  | 'binding_not_allowed'
  /** Entra needs something switched on or fixed on its side (AADSTS392196, 392199, 500181, 51000). */
  | 'entra_configuration'

/** What an upstream error response said, passed through to the caller (never a token or secret). */
export interface UpstreamErrorDetail {
  endpoint?: string
  status?: number
  error?: string
  errorDescription?: string
  errorCodes?: number[]
  traceId?: string
  correlationId?: string
}

export interface SidecarErrorOptions {
  reason?: ErrorReason
  upstream?: UpstreamErrorDetail
  retryAfterSeconds?: number
  cause?: unknown
}

export class SidecarError extends Error {
  override readonly name = 'SidecarError'
  readonly code: ErrorCode
  readonly reason: ErrorReason | undefined
  readonly upstream: UpstreamErrorDetail | undefined
  readonly retryAfterSeconds: number | undefined

  constructor(code: ErrorCode, message: string, options: SidecarErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.reason = options.reason
    this.upstream = options.upstream
    this.retryAfterSeconds = options.retryAfterSeconds
  }

  get status(): number {
    return errorStatus[this.code]
  }
}

export function isSidecarError(value: unknown): value is SidecarError {
  return value instanceof SidecarError
}

/** Code and message only, for logs: SidecarError messages never carry secrets. */
export function describeError(error: unknown): string {
  if (error instanceof SidecarError)
    return `${error.code}${error.reason ? `/${error.reason}` : ''}: ${error.message}`
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error)
}
