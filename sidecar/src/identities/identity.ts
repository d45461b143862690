import type { IdentityConfig } from '../config/types.ts'
import type { Runtime } from '../core/runtime.ts'
import type { UpstreamWait } from '../core/retry-after.ts'
import { retryOnceWithFreshBinding } from '../credentials/binding-retry.ts'
import type { CachedToken, TokenCache } from '../cache/token-cache.ts'
import { mergeClaimsAndCapabilities, unionCapabilities, type CaeRequest } from '../model/claims.ts'
import type { AcquiredToken, TokenType } from '../model/token.ts'
import type { BindingCertificate } from '../model/binding.ts'
import type { CredentialBundle } from '../model/bundle.ts'
import type { Scope } from '../model/scope.ts'
import { forcedRefresh, type ForcedRefresh } from './cae-refresh.ts'
import type { CredentialChain, Selected } from './chain.ts'
import { servedTokenType } from '../config/token-scheme.ts'

/** A token as served to a caller, with where it came from. */
export interface ServedToken {
  identity: Identity
  scope: Scope
  token: CachedToken
  /** The cache entry it came from (identity, type, binding thumbprint, scope). */
  cacheKey: string
}

/** What every identity shares: the one token cache (bounded by cache.maxTokens) and the runtime. */
export interface IdentityPipeline {
  cache: TokenCache
  runtime: Runtime
}

/**
 * One configured identity: a name, the token type its callers get, its chain of credential sources
 * (a managed identity's one source, or a confidential client's `clientCredentials`) and its token
 * pipeline (`token`): binding, cache slot, source and the "binding rejected → re-mint once" retry,
 * each visited once per request.
 *
 * The binding is the certificate its source presents or signs with (an IMDS v2 binding
 * certificate, the app certificate, or the FIC leg-1 certificate); it is part of the token cache
 * key, so a new certificate means new tokens, and a rejected one is dropped and re-loaded.
 */
export class Identity {
  readonly name: string
  readonly config: IdentityConfig
  /** What callers get: mtls_pop for protocolScheme MTLS_POP, else Bearer. */
  readonly tokenType: TokenType
  readonly #chain: CredentialChain
  readonly #cache: TokenCache
  readonly #runtime: Runtime

  constructor(config: IdentityConfig, chain: CredentialChain, pipeline: IdentityPipeline) {
    this.name = config.name
    this.config = config
    this.tokenType = servedTokenType(config)
    this.#chain = chain
    this.#cache = pipeline.cache
    this.#runtime = pipeline.runtime
  }

  /**
   * A fresh cache hit for `scope`, synchronously, or undefined when answering needs `token` (a
   * miss, a refresh due, a binding that is not known without waiting). The fast lane's peek.
   */
  cachedToken(scope: Scope): ServedToken | undefined {
    const known = this.#chain.bindingIfKnown()
    if (known === undefined) return undefined
    const key = this.#cacheKey(known.binding, scope)
    const token = this.#cache.fresh(key)
    return token && { identity: this, scope, token, cacheKey: key }
  }

  /**
   * A token for `scope`: the credential and its binding are loaded once, the binding picks the
   * cache slot, and the slot serves its token or fetches one from that credential (single-flight).
   * When upstream rejects the binding (invalid_client, TLS failure) it is dropped, a fresh one is
   * loaded and the request runs once more. With `cae` (contract §3) the request may force a
   * refresh (`cae-refresh.ts`). `signal` ends the fetch for every caller sharing it (the daemon
   * closing), not one caller's wait; `wait` is pointed at the fetch this call waits on.
   */
  token(scope: Scope, cae: CaeRequest, signal: AbortSignal, wait?: UpstreamWait): Promise<ServedToken> {
    return retryOnceWithFreshBinding({
      load: () => this.#chain.select(signal),
      attempt: (selected) => this.#fromSlot(selected, scope, cae, signal, wait),
      rejected: (binding, error) => {
        this.#runtime.logger.warn(
          { identity: this.name, 'x5t#S256': binding.x5tS256, reason: error.reason },
          'upstream rejected the binding certificate; minting a fresh one and retrying once',
        )
        this.#chain.invalidate(binding)
      },
    })
  }

  /**
   * The resource refused `served.token` (401): forget it so the next `token` fetches a fresh one
   * (proxy mode retries once with it). A token that was already replaced is left alone.
   */
  refused(served: ServedToken): void {
    this.#cache.invalidate(served.cacheKey, served.token.accessToken)
  }

  /**
   * The certificate the next token will be bound to or obtained with, or undefined when this
   * identity's tokens involve no certificate (warm-up and doctor). May acquire the credential.
   */
  async currentBinding(signal: AbortSignal): Promise<BindingCertificate | undefined> {
    return (await this.#chain.select(signal)).binding
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

  async #fromSlot(
    selected: Selected,
    scope: Scope,
    cae: CaeRequest,
    signal: AbortSignal,
    wait: UpstreamWait | undefined,
  ): Promise<ServedToken> {
    // The key holds the binding asked for, not the one on the answer: an unbound answer
    // (private_key_jwt) may come from an identity whose certificate is still part of its key.
    const key = this.#cacheKey(selected.binding, scope)
    const forced = forcedRefresh(cae, this.#cache.peek(key))
    const fetch = () => this.#fetch(selected, scope, key, cae.clientCapabilities, forced, signal)
    if (forced === undefined)
      return { identity: this, scope, token: await this.#cache.get(key, fetch, wait), cacheKey: key }
    this.#runtime.logger.info(
      { identity: this.name, scope: scope.scope, claims: forced.claims !== undefined },
      'refreshing a token a resource refused (continuous access evaluation)',
    )
    return { identity: this, scope, token: await this.#cache.forceRefresh(key, fetch, wait), cacheKey: key }
  }

  /**
   * Fetches a new token for `scope` from the selected credential. The caller's capabilities are
   * added to the configured `clientCapabilities`, and merged with a claims challenge for Entra;
   * each source sends what its upstream understands.
   */
  async #fetch(
    selected: Selected,
    scope: Scope,
    key: string,
    callerCapabilities: string[] | undefined,
    forced: ForcedRefresh | undefined,
    signal: AbortSignal,
  ): Promise<AcquiredToken> {
    const clientCapabilities = unionCapabilities(this.config.clientCapabilities, callerCapabilities)
    const claims = mergeClaimsAndCapabilities(forced?.claims, clientCapabilities)
    const acquired = await selected.credential.acquireToken({
      scope,
      binding: selected.binding,
      signal,
      clientCapabilities,
      ...(claims === undefined ? {} : { claims }),
      ...(forced?.tokenSha256ToRefresh ? { tokenSha256ToRefresh: forced.tokenSha256ToRefresh } : {}),
    })
    this.#runtime.metrics.observeToken(
      key,
      this.name,
      scope.scope,
      acquired.expiresOn,
      acquired.binding?.notAfter,
    )
    return acquired
  }

  /** identity + token type + binding thumbprint (empty when unbound) + scope. */
  #cacheKey(binding: BindingCertificate | undefined, scope: Scope): string {
    return `${this.name}\n${this.tokenType}\n${binding?.x5tS256 ?? ''}\n${scope.scope.toLowerCase()}`
  }
}
