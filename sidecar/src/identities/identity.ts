import type { IdentityConfig } from '../config/types.ts'
import type { AcquireOptions } from '../model/claims.ts'
import type { AcquiredToken, TokenType } from '../model/token.ts'
import type { BindingCertificate } from '../model/binding.ts'
import type { CredentialBundle } from '../model/bundle.ts'

/**
 * One configured identity: knows how to get its credential and its tokens from upstream. Caching,
 * single-flight across callers, refresh-ahead and the "binding rejected → re-mint once" retry live
 * in `tokens/token-service.ts`, so every identity kind gets them the same way.
 */
export interface Identity {
  readonly name: string
  readonly config: IdentityConfig
  /** What callers get: mtls_pop for protocolScheme MTLS_POP, else Bearer. */
  readonly tokenType: TokenType

  /**
   * The certificate the next token will be bound to or obtained with (part of the cache key), or
   * undefined when this identity's tokens involve no certificate. May acquire the credential;
   * implementations make that single-flight.
   */
  currentBinding(signal: AbortSignal): Promise<BindingCertificate | undefined>

  /**
   * What `currentBinding` would resolve to right now, when that is known without waiting or I/O
   * (`{ binding }`, binding undefined for identities without a certificate); undefined when only
   * `currentBinding` can tell. Lets a cache hit be served synchronously (the fast lane).
   */
  bindingIfKnown(): { binding: BindingCertificate | undefined } | undefined

  /**
   * Fetches a new token for `scope` (normalised `<resource>/.default`) with that binding.
   * `options` carries continuous access evaluation inputs (claims challenge, caller capabilities,
   * hash of the token being replaced); each identity sends what its upstream understands, merged
   * with its configured `clientCapabilities`.
   */
  acquireToken(
    scope: string,
    binding: BindingCertificate | undefined,
    signal: AbortSignal,
    options?: AcquireOptions,
  ): Promise<AcquiredToken>

  /**
   * Upstream rejected `binding` (invalid_client, TLS failure): forget it so the next
   * `currentBinding` mints or loads a fresh one. A binding that is no longer current is ignored.
   */
  invalidateBinding(binding: BindingCertificate): void

  /** The bound credential bundle for GET /credential; throws `no_bound_credential` when unbound. */
  credentialBundle(signal: AbortSignal): Promise<CredentialBundle>

  /** Starts background work (key pre-generation, renewal timers). Idempotent. */
  start(): void

  /** Stops timers and closes connections. */
  close(): Promise<void>
}
