import type { AbortSignalLike } from './abort.ts'
import type { GetTokenOptions } from './get-token-options.ts'
import type { SidecarToken } from './token.ts'
import { CredentialUnavailableError, SidecarClientError } from './errors.ts'

/**
 * Options of {@link SidecarClient.tokenCredential}.
 *
 * @example
 * ```ts
 * const credential = sidecar.tokenCredential({ identity: 'mi' })
 * ```
 */
export interface TokenCredentialOptions {
  /** Identity to ask for; default the client's. */
  identity?: string
}

/**
 * `@azure/core-auth`'s AccessToken, as a Bearer token (ms timestamps).
 *
 * @example
 * ```ts
 * const t: SidecarAccessToken | null = await sidecar.tokenCredential().getToken('https://vault.azure.net/.default')
 * ```
 */
export interface SidecarAccessToken {
  token: string
  expiresOnTimestamp: number
  refreshAfterTimestamp: number
  tokenType: 'Bearer'
}

/**
 * The options Azure SDK pipelines pass to `getToken` that the sidecar can act on.
 *
 * @example
 * ```ts
 * await credential.getToken(['https://vault.azure.net/.default'], { abortSignal: AbortSignal.timeout(5000) })
 * ```
 */
export interface SidecarTokenCredentialGetTokenOptions {
  abortSignal?: AbortSignalLike
  /** A CAE claims challenge (Azure SDK pipelines pass it after a 401 with claims): sent to the sidecar. */
  claims?: string
  /**
   * The tenant the caller needs a token from (Key Vault and Storage pass the one their challenge
   * names). The sidecar's identity decides the tenant, so the token is returned only when it was
   * issued by this tenant (its `tid` claim); otherwise `CredentialUnavailableError`
   * (`tenant_mismatch`), as @azure/identity's credentials do for a tenant they are not allowed.
   */
  tenantId?: string
  /** `timeout`: milliseconds to wait for the token before `CredentialUnavailableError` (`timeout`); 0 or absent: the client's `timeoutMs`. */
  requestOptions?: { timeout?: number }
  /**
   * Signed-HTTP-request PoP (`tokenType: 'pop'`), which the sidecar does not issue: refused
   * (`invalid_argument`) rather than answered with a Bearer token the caller would send as PoP.
   */
  proofOfPossessionOptions?: unknown
}

/**
 * Structurally an `@azure/core-auth` TokenCredential (declared here so the SDK needs no runtime
 * Azure package): pass it to any Azure SDK client.
 *
 * @example
 * ```ts
 * import type { TokenCredential } from '@azure/core-auth'
 * const credential: TokenCredential = sidecar.tokenCredential()
 * ```
 */
export interface SidecarTokenCredential {
  getToken(
    scopes: string | string[],
    options?: SidecarTokenCredentialGetTokenOptions,
  ): Promise<SidecarAccessToken | null>
}

/**
 * The sidecar's codes that mean "this credential cannot serve here" rather than "it failed": a chain
 * should try its next credential, as @azure/identity's own credentials let it when their endpoint is
 * not there or the identity does not exist.
 */
const unavailableCodes = new Set(['connection_failed', 'timeout', 'unknown_identity'])

/** Builds the credential; use {@link SidecarClient.tokenCredential}. */
export function createTokenCredential(
  client: { getToken(scopes: string | string[], options: GetTokenOptions): Promise<SidecarToken> },
  options: TokenCredentialOptions,
): SidecarTokenCredential {
  return {
    async getToken(scopes, getTokenOptions = {}) {
      const { tenantId, requestOptions, proofOfPossessionOptions } = getTokenOptions
      if (proofOfPossessionOptions !== undefined)
        throw new SidecarClientError(
          'invalid_argument',
          'proofOfPossessionOptions: the sidecar issues Bearer and mtls_pop tokens, not signed-HTTP-request PoP tokens',
        )
      if (tenantId !== undefined && (typeof tenantId !== 'string' || tenantId === ''))
        throw new SidecarClientError('invalid_argument', 'tenantId: expected a non-empty tenant ID')
      const request: GetTokenOptions = {}
      if (options.identity !== undefined) request.identity = options.identity
      if (getTokenOptions.abortSignal !== undefined) request.abortSignal = getTokenOptions.abortSignal
      const timeout = requestOptions?.timeout
      if (timeout !== undefined && timeout !== 0) request.timeoutMs = timeout
      // Azure SDKs ask again with claims after a resource rejected the token (CAE).
      if (getTokenOptions.claims) request.claims = getTokenOptions.claims
      let t
      try {
        t = await client.getToken(scopes, request)
      } catch (error) {
        if (error instanceof SidecarClientError && unavailableCodes.has(error.code))
          throw new CredentialUnavailableError(error.code, error.message, {
            cause: error,
            ...(error.status === undefined ? {} : { status: error.status }),
            ...(error.correlationId === undefined ? {} : { correlationId: error.correlationId }),
          })
        throw error
      }
      const identity = t.identity || options.identity || '(default)'
      if (t.tokenType !== 'Bearer') {
        // Azure SDK clients send `Authorization: Bearer`; an mtls_pop token sent so is refused by
        // the resource, or worse accepted without its proof of possession.
        throw new SidecarClientError(
          'bearer_required',
          `Identity "${identity}" serves ${t.tokenType} tokens, which Azure SDK ` +
            'clients cannot send (they send Bearer); use SidecarClient.fetch or mtlsAgent, or a Bearer identity',
        )
      }
      if (tenantId !== undefined) {
        const issuer = tenantOf(t.token)
        if (issuer?.toLowerCase() !== tenantId.toLowerCase())
          throw new CredentialUnavailableError(
            'tenant_mismatch',
            issuer === undefined
              ? `Tenant ${tenantId} was asked for, and identity "${identity}"'s token does not say which tenant issued it; ` +
                  'the sidecar serves each identity from its own tenant and cannot switch'
              : `Tenant ${tenantId} was asked for, and identity "${identity}"'s tokens are issued by tenant ${issuer}; ` +
                  'the sidecar serves each identity from its own tenant and cannot switch (configure an identity in that tenant)',
          )
      }
      return {
        token: t.token,
        expiresOnTimestamp: t.expiresOnTimestamp,
        refreshAfterTimestamp: t.refreshAfterTimestamp,
        tokenType: 'Bearer',
      }
    },
  }
}

/**
 * The `tid` claim of a JWT access token, read without verifying it: the token comes from the
 * sidecar, and the value only decides whether to refuse it. Undefined for a token that is not a
 * JWT or has no `tid`.
 */
function tenantOf(token: string): string | undefined {
  const payload = token.split('.')[1]
  if (payload === undefined) return undefined
  try {
    const claims: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
    const tid = (claims as { tid?: unknown } | null)?.tid
    return typeof tid === 'string' && tid !== '' ? tid : undefined
  } catch {
    return undefined
  }
}
