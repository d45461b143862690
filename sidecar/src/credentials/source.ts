import type { Runtime } from '../core/runtime.ts'
import type { EntraTokenClient } from '../upstream/entra/token-client.ts'
import type { AcquiredToken, TokenType } from '../model/token.ts'
import type { BindingCertificate } from '../model/binding.ts'
import type { CredentialBundle } from '../model/bundle.ts'
import type { Scope } from '../model/scope.ts'

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
 * The request fields every confidential-client source starts from: this app at Entra's regular
 * token endpoint (the mTLS one is `app.mtlsTokenEndpoint`).
 */
export function appRequest(app: AppContext, scope: Scope) {
  return {
    tokenEndpoint: app.tokenEndpoint,
    clientId: app.clientId,
    scope: scope.scope,
    identityName: app.identityName,
  }
}

/**
 * One acquisition as a source gets it. The continuous access evaluation inputs (contract §3) are
 * prepared once by the identity; each source sends the part its upstream understands.
 */
export interface SourceTokenRequest {
  /** Both spellings: IMDS v1 takes `scope.resource`, Entra `scope.scope`. */
  scope: Scope
  /**
   * The binding `load` gave for the cache key. It may be a moment old; a source may use its current
   * state instead so that what it presents is self-consistent (an FIC assertion with the
   * certificate its cnf names).
   */
  binding: BindingCertificate | undefined
  signal: AbortSignal
  /** Entra's `claims` parameter: the claims challenge merged with the capabilities; none when neither. */
  claims?: string
  /** The identity's configured capabilities and the caller's (IMDS v1 takes them as `xms_cc`). */
  clientCapabilities: string[]
  /** hex SHA-256 of the token this acquisition replaces (IMDS v1 `token_sha256_to_refresh`). */
  tokenSha256ToRefresh?: string
}

/**
 * One way to get an identity's tokens, the way MSAL models its sources: a managed identity over
 * IMDS v1 (Bearer) or IMDS v2 (bound), or one entry of a confidential client's `clientCredentials`
 * (certificate, client secret, assertion file, FIC from a managed identity). An identity holds an
 * ordered chain of them (`identities/chain.ts`); implementations make `load` cheap when nothing
 * changed.
 */
export interface CredentialSource {
  /** e.g. `clientCredentials[i] (<sourceType> <where>)`: for logs; never a secret. */
  readonly label: string
  /** Whether it can present a certificate over mTLS (and so give mtls_pop tokens). */
  readonly canBind: boolean

  /**
   * Makes sure the source is usable now and returns the certificate tokens will be bound to or
   * obtained with (part of the token cache key), or undefined when none is involved. Throws when it
   * does not load (file missing or unreadable, IMDS or FIC leg 1 failing), with a loggable reason.
   * May acquire the credential; implementations make that single-flight.
   */
  load(signal: AbortSignal): Promise<BindingCertificate | undefined>

  /**
   * What `load` would resolve to right now, when that is known without waiting or I/O (`{ binding }`,
   * binding undefined for a source without a certificate); undefined when only `load` can tell.
   * Lets a cache hit be served synchronously (the fast lane). Absent: only `load` can tell.
   */
  bindingIfKnown?(): { binding: BindingCertificate | undefined } | undefined

  /** Fetches a token for `request.scope` with the source as last loaded. */
  acquireToken(request: SourceTokenRequest): Promise<AcquiredToken>

  /**
   * Upstream rejected `binding` (invalid_client, TLS failure): drop it so the next `load` re-reads or
   * re-mints. A binding that is not this source's current one is ignored. Absent: nothing to drop.
   */
  invalidate?(binding: BindingCertificate): void

  /** GET /credential; throws `no_bound_credential` when nothing is presented over mTLS. */
  bundle(signal: AbortSignal): Promise<CredentialBundle>

  /** Starts background work (key pre-generation, renewal timers). Idempotent. Absent: none. */
  start?(): void
  /** Stops timers and closes connections. Absent: none to stop. */
  close?(): Promise<void> | void
}
