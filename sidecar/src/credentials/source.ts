import type { Runtime } from '../core/runtime.ts'
import type { EntraTokenClient } from '../upstream/entra/token-client.ts'
import type { AcquiredToken, TokenType } from '../model/token.ts'
import type { BindingCertificate } from '../model/binding.ts'
import type { CredentialBundle } from '../model/bundle.ts'

/** What every credential source of one confidential client shares: the app and where its tokens come from. */
export interface AppContext {
  /** Identity name, for logs and metrics. */
  identityName: string
  clientId: string
  tenantId: string
  /** `{authorityHost}/{tenant}/oauth2/v2.0/token`: client secret, private_key_jwt, jwt-bearer. */
  tokenEndpoint: string
  /** `{region.}mtlsauth.…/{tenant}/oauth2/v2.0/token`: certificate presented in the TLS handshake. */
  mtlsTokenEndpoint: string
  /** What callers are served: mtls_pop for protocolScheme MTLS_POP, else Bearer. */
  tokenType: TokenType
  allowBearerFallback: boolean
  sendX5C: boolean
  entra: EntraTokenClient
  runtime: Runtime
}

/**
 * One entry of `clientCredentials`. The chain (`credential-chain.ts`) uses the first entry whose
 * `load` succeeds; implementations make `load` cheap when nothing changed.
 */
export interface ClientCredential {
  /** `clientCredentials[i] (<sourceType> <where>)`: for logs; never a secret. */
  readonly label: string
  /** Whether it can present a certificate over mTLS (and so give mtls_pop tokens). */
  readonly canBind: boolean

  /**
   * Makes sure the credential is usable now and returns the certificate tokens will be obtained with
   * (part of the token cache key), or undefined when none is involved. Throws when it does not load
   * (file missing or unreadable, managed identity leg 1 failing), with a loggable reason.
   */
  load(signal: AbortSignal): Promise<BindingCertificate | undefined>

  /**
   * Fetches a token for `scope` (`…/.default`) with the credential as last loaded. `claims` is the
   * `claims` parameter, already merged with the client capabilities.
   */
  acquireToken(scope: string, signal: AbortSignal, options?: { claims?: string }): Promise<AcquiredToken>

  /** Upstream rejected `binding`: drop it so the next `load` re-reads / re-mints. */
  invalidate(binding: BindingCertificate): void

  /** GET /credential; throws `no_bound_credential` when nothing is presented over mTLS. */
  bundle(signal: AbortSignal): Promise<CredentialBundle>

  start(): void
  close(): Promise<void>
}
