import type { IdentityConfig } from '../config/types.ts'
import { mergeClaimsAndCapabilities, unionCapabilities, type AcquireOptions } from '../model/claims.ts'
import type { AcquiredToken, TokenType } from '../model/token.ts'
import type { BindingCertificate } from '../model/binding.ts'
import type { CredentialBundle } from '../model/bundle.ts'
import type { CredentialChain } from './chain.ts'
import { servedTokenType } from '../config/token-scheme.ts'

/**
 * One configured identity: a name, the token type its callers get, and its chain of credential
 * sources (a managed identity's one source, or a confidential client's `clientCredentials`).
 * Caching, single-flight across callers, refresh-ahead and the "binding rejected → re-mint once"
 * retry live in `tokens/token-service.ts`, so every identity gets them the same way.
 *
 * The binding it reports is the certificate its source presents or signs with (an IMDS v2 binding
 * certificate, the app certificate, or the FIC leg-1 certificate); it is part of the token cache
 * key, so a new certificate means new tokens, and a rejected one is dropped and re-loaded.
 */
export class Identity {
  readonly name: string
  readonly config: IdentityConfig
  /** What callers get: mtls_pop for protocolScheme MTLS_POP, else Bearer. */
  readonly tokenType: TokenType
  readonly #chain: CredentialChain

  constructor(config: IdentityConfig, chain: CredentialChain) {
    this.name = config.name
    this.config = config
    this.tokenType = servedTokenType(config)
    this.#chain = chain
  }

  /**
   * The certificate the next token will be bound to or obtained with (part of the cache key), or
   * undefined when this identity's tokens involve no certificate. May acquire the credential;
   * sources make that single-flight.
   */
  async currentBinding(signal: AbortSignal): Promise<BindingCertificate | undefined> {
    return (await this.#chain.select(signal)).binding
  }

  /**
   * What `currentBinding` would resolve to right now, when that is known without waiting or I/O
   * (`{ binding }`, binding undefined for identities without a certificate); undefined when only
   * `currentBinding` can tell. Lets a cache hit be served synchronously (the fast lane).
   */
  bindingIfKnown(): { binding: BindingCertificate | undefined } | undefined {
    return this.#chain.bindingIfKnown()
  }

  /**
   * Fetches a new token for `scope` (normalised `<resource>/.default`) with that binding, from the
   * source in use now. `options` carries continuous access evaluation inputs (claims challenge,
   * caller capabilities, hash of the token being replaced), merged here with the configured
   * `clientCapabilities`; each source sends what its upstream understands.
   */
  async acquireToken(
    scope: string,
    binding: BindingCertificate | undefined,
    signal: AbortSignal,
    options: AcquireOptions = {},
  ): Promise<AcquiredToken> {
    const source = await this.#chain.inUse(signal)
    const clientCapabilities = unionCapabilities(this.config.clientCapabilities, options.clientCapabilities)
    const claims = mergeClaimsAndCapabilities(options.claims, clientCapabilities)
    return source.acquireToken({
      scope,
      binding,
      signal,
      clientCapabilities,
      ...(claims === undefined ? {} : { claims }),
      ...(options.tokenSha256ToRefresh ? { tokenSha256ToRefresh: options.tokenSha256ToRefresh } : {}),
    })
  }

  /**
   * Upstream rejected `binding` (invalid_client, TLS failure): forget it so the next
   * `currentBinding` mints or loads a fresh one. A binding that is no longer current is ignored.
   */
  invalidateBinding(binding: BindingCertificate): void {
    this.#chain.invalidate(binding)
  }

  /** The bound credential bundle for GET /credential; throws `no_bound_credential` when unbound. */
  async credentialBundle(signal: AbortSignal): Promise<CredentialBundle> {
    return (await this.#chain.inUse(signal)).bundle(signal)
  }

  /** Starts background work (key pre-generation, renewal timers). Idempotent. */
  start(): void {
    this.#chain.start()
  }

  /** Stops timers and closes connections. */
  close(): Promise<void> {
    return this.#chain.close()
  }
}
