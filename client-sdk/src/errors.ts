/**
 * Codes the SDK raises itself, before or instead of an answer from the sidecar. Codes the sidecar
 * answers with (`invalid_request`, `unknown_identity`, `invalid_resource`, `unauthorized`,
 * `upstream_error`, `upstream_unavailable`, …) are passed through as they come.
 *
 * @example
 * ```ts
 * const retryable: LocalErrorCode[] = ['connection_failed', 'timeout']
 * ```
 */
export type LocalErrorCode =
  /** The endpoint is not loopback and `allowRemote` was not set. */
  | 'remote_endpoint_refused'
  /** The endpoint is not an http(s) URL or `unix:/path`. */
  | 'invalid_endpoint'
  /** An option or argument is malformed (named in the message). */
  | 'invalid_argument'
  /** The sidecar could not be reached, even after one retry. */
  | 'connection_failed'
  /** No answer within `timeoutMs`. */
  | 'timeout'
  /** The sidecar answered something that is not a token response or an error body. */
  | 'invalid_response'
  /** An mtls_pop token came without its binding certificate. */
  | 'pop_requires_binding_certificate'
  /** An mtls_pop token came without the certificate's private key (`exposePrivateKey: false`). */
  | 'private_key_not_exposed'
  /** A Bearer-only consumer (the Azure SDK TokenCredential) was given an mtls_pop identity. */
  | 'bearer_required'
  /** `tokenCredential()` was asked for a tenant other than the one that issues the identity's tokens. */
  | 'tenant_mismatch'

/**
 * A local code, or the sidecar's `error` field as it answered it.
 *
 * @example
 * ```ts
 * const code: SidecarClientErrorCode = 'invalid_resource'
 * ```
 */
export type SidecarClientErrorCode = LocalErrorCode | (string & {})

/**
 * What a {@link SidecarClientError} carries besides its code and message.
 *
 * @example
 * ```ts
 * new SidecarClientError('timeout', 'No answer within 30000 ms', { description: 'timeout' })
 * ```
 */
export interface SidecarClientErrorOptions {
  status?: number
  correlationId?: string
  description?: string
  errorCodes?: number[]
  cause?: unknown
}

/**
 * The one error type the SDK throws. `code` is the sidecar's `error` field when the sidecar
 * answered, else one of {@link LocalErrorCode}. Messages never carry a token, key or secret.
 *
 * @example
 * ```ts
 * try {
 *   await sidecar.getToken('https://graph.microsoft.com/.default')
 * } catch (error) {
 *   if (error instanceof SidecarClientError && error.code === 'unknown_identity') {
 *     console.error(error.description, error.correlationId)
 *   }
 *   throw error
 * }
 * ```
 */
export class SidecarClientError extends Error {
  override readonly name: string = 'SidecarClientError'
  readonly code: SidecarClientErrorCode
  /** HTTP status of the sidecar's answer, when it answered. */
  readonly status: number | undefined
  /** The sidecar's `correlation_id`: quote it when reading the sidecar's log. */
  readonly correlationId: string | undefined
  /** The sidecar's `error_description`, or the local reason. */
  readonly description: string | undefined
  /** Upstream AADSTS codes the sidecar passed through. */
  readonly errorCodes: number[] | undefined

  constructor(code: SidecarClientErrorCode, message: string, options: SidecarClientErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.status = options.status
    this.correlationId = options.correlationId
    this.description = options.description ?? message
    this.errorCodes = options.errorCodes
  }
}

/**
 * True when `error` is a {@link SidecarClientError}, optionally with the given code.
 *
 * @example
 * ```ts
 * if (isSidecarClientError(error, 'connection_failed')) console.error('is the sidecar running?')
 * ```
 */
export function isSidecarClientError(
  error: unknown,
  code?: SidecarClientErrorCode,
): error is SidecarClientError {
  return error instanceof SidecarClientError && (code === undefined || error.code === code)
}

/**
 * What `tokenCredential().getToken` throws when this credential cannot serve the request at all —
 * the sidecar cannot be reached (`connection_failed`, `timeout`), has no such identity
 * (`unknown_identity`), or issues the identity's tokens in another tenant (`tenant_mismatch`) — so
 * that `ChainedTokenCredential` and `DefaultAzureCredential`-style chains try their next
 * credential. @azure/identity recognises it by its `name`, `CredentialUnavailableError`, as it does
 * its own; it is still a {@link SidecarClientError} with the code that caused it.
 *
 * @example
 * ```ts
 * import { ChainedTokenCredential, AzureCliCredential } from '@azure/identity'
 * // On a laptop without a sidecar, the chain moves on to the Azure CLI.
 * const credential = new ChainedTokenCredential(sidecar.tokenCredential(), new AzureCliCredential())
 * ```
 */
export class CredentialUnavailableError extends SidecarClientError {
  override readonly name: string = 'CredentialUnavailableError'
}
