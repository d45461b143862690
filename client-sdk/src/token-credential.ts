import type { AbortSignalLike } from './abort.ts'
import type { GetTokenOptions, SidecarClient } from './client.ts'
import { SidecarClientError } from './errors.ts'

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

/** Builds the credential; use {@link SidecarClient.tokenCredential}. */
export function createTokenCredential(
  client: Pick<SidecarClient, 'getToken'>,
  options: TokenCredentialOptions,
): SidecarTokenCredential {
  return {
    async getToken(scopes, getTokenOptions = {}) {
      const request: GetTokenOptions = {}
      if (options.identity !== undefined) request.identity = options.identity
      if (getTokenOptions.abortSignal !== undefined) request.abortSignal = getTokenOptions.abortSignal
      // Azure SDKs ask again with claims after a resource rejected the token (CAE).
      if (getTokenOptions.claims) request.claims = getTokenOptions.claims
      const t = await client.getToken(scopes, request)
      if (t.tokenType !== 'Bearer') {
        // Azure SDK clients send `Authorization: Bearer`; an mtls_pop token sent so is refused by
        // the resource, or worse accepted without its proof of possession.
        throw new SidecarClientError(
          'bearer_required',
          `Identity "${t.identity || options.identity || '(default)'}" serves ${t.tokenType} tokens, which Azure SDK ` +
            'clients cannot send (they send Bearer); use SidecarClient.fetch or mtlsAgent, or a Bearer identity',
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
