import type { Runtime } from '../core/runtime.ts'
import { SidecarError } from '../core/errors.ts'
import { setLongTimer } from '../core/long-timer.ts'
import { RetryAfterHint } from '../core/retry-after.ts'
import { retryOnceWithFreshBinding } from '../credentials/binding-retry.ts'
import type { Identity } from '../identities/identity.ts'
import type { BindingCertificate } from '../model/binding.ts'
import type { CachedToken, TokenCache } from './token-cache.ts'
import type { NormalisedScope } from './scope.ts'
import { createHash } from 'node:crypto'
import type { AcquireOptions, CaeRequest } from '../model/claims.ts'

export interface ServedToken {
  identity: Identity
  scope: NormalisedScope
  token: CachedToken
  /** The cache entry it came from (identity, type, binding thumbprint, scope). */
  cacheKey: string
}

export interface TokenServiceOptions {
  runtime: Runtime
  identities: ReadonlyMap<string, Identity>
  defaultIdentity: string
  cache: TokenCache
  /** A caller gets an answer by then, even while upstream retries go on in the background. */
  requestDeadlineMs: number
}

/**
 * Serves tokens for every identity the same way: look up the identity, get its current binding
 * (which is part of the cache key, so a new certificate means new tokens), then the cache. When
 * upstream rejects the binding (invalid_client or a TLS failure), drop it, mint a fresh one and
 * retry once.
 */
/** Our own back-off when upstream gave none: IMDS's retry schedule is 1 + 2 + 4 s. */
const defaultRetryAfterSeconds = 5

export class TokenService {
  readonly #runtime: Runtime
  readonly #identities: ReadonlyMap<string, Identity>
  readonly #defaultIdentity: string
  readonly #cache: TokenCache
  readonly #deadlineMs: number
  readonly #closing = new AbortController()
  /** Per cache key being fetched: the Retry-After upstream asked for meanwhile. */
  readonly #hints = new Map<string, RetryAfterHint>()

  constructor(options: TokenServiceOptions) {
    this.#runtime = options.runtime
    this.#identities = options.identities
    this.#defaultIdentity = options.defaultIdentity
    this.#cache = options.cache
    this.#deadlineMs = options.requestDeadlineMs
  }

  /** Resolves `name` (or the default identity); unknown names are the caller's error. */
  identity(name: string | undefined): Identity {
    const resolved = name ?? this.#defaultIdentity
    const identity = this.#identities.get(resolved)
    if (!identity) {
      throw new SidecarError(
        'unknown_identity',
        `No identity named "${resolved}" is configured (known: ${[...this.#identities.keys()].join(', ')})`,
      )
    }
    return identity
  }

  get identities(): ReadonlyMap<string, Identity> {
    return this.#identities
  }

  /**
   * A token for `scope`, from the cache when it holds a servable one. With `cae` (continuous access
   * evaluation, contract §3) a claims challenge, or the hash of the cached token, makes this a
   * forced refresh: upstream is asked again (rate-limited per entry, see TokenCache.forceRefresh)
   * and the answer replaces the cached token. A hash naming another token (one already replaced)
   * is answered from the cache, claims or not: that caller just has not seen the new token yet.
   */
  async getToken(identity: Identity, scope: NormalisedScope, cae: CaeRequest = {}): Promise<ServedToken> {
    // A plain hit needs no deadline timer, no race and no await: the answer is already in memory.
    if (!asksForRefresh(cae)) {
      const hit = this.peek(identity, scope)
      if (hit) return hit
    }
    // The cache entry this request waits on, so a deadline 503 can quote upstream's Retry-After.
    const waitingOn: { key?: string } = {}
    const { token, key } = await this.withDeadline(this.#acquire(identity, scope, cae, waitingOn), () =>
      waitingOn.key === undefined ? undefined : this.#hints.get(waitingOn.key)?.seconds,
    )
    return { identity, scope, token, cacheKey: key }
  }

  /**
   * A fresh cache hit for `identity` and `scope`, synchronously, or undefined when answering needs
   * `getToken` (a miss, a refresh due, a binding that is not known without waiting).
   */
  peek(identity: Identity, scope: NormalisedScope): ServedToken | undefined {
    const known = identity.bindingIfKnown()
    if (known === undefined) return undefined
    const key = cacheKey(identity, known.binding, scope)
    const token = this.#cache.peekFresh(key)
    return token && { identity, scope, token, cacheKey: key }
  }

  /**
   * The resource refused `served.token` (401): forget it so the next `getToken` fetches a fresh one
   * (proxy mode retries once with it). A token that was already replaced is left alone.
   */
  invalidate(served: ServedToken): void {
    this.#cache.invalidate(served.cacheKey, served.token.accessToken)
  }

  /**
   * Races `work` against the request deadline. The work itself is not cancelled: it is shared
   * (single-flight) and its answer fills the cache for the next caller. The 503's Retry-After is
   * upstream's when the fetch saw one (`upstreamRetryAfter`), else our own back-off.
   */
  async withDeadline<T>(work: Promise<T>, upstreamRetryAfter?: () => number | undefined): Promise<T> {
    let timer: { cancel(): void } | undefined
    const deadline = new Promise<never>((_, reject) => {
      timer = setLongTimer(this.#runtime.clock, this.#deadlineMs, () =>
        reject(
          new SidecarError(
            'upstream_unavailable',
            `No answer from upstream within ${this.#deadlineMs} ms; still trying in the background`,
            { retryAfterSeconds: upstreamRetryAfter?.() ?? defaultRetryAfterSeconds },
          ),
        ),
      )
    })
    try {
      return await Promise.race([work, deadline])
    } finally {
      timer?.cancel()
    }
  }

  close(): void {
    this.#closing.abort(new SidecarError('shutting_down', 'The sidecar is shutting down'))
  }

  #acquire(
    identity: Identity,
    scope: NormalisedScope,
    cae: CaeRequest,
    waitingOn: { key?: string },
  ): Promise<{ token: CachedToken; key: string }> {
    const signal = this.#closing.signal
    return retryOnceWithFreshBinding({
      load: () => identity.currentBinding(signal),
      attempt: (binding) => this.#fromCache(identity, scope, cae, binding, signal, waitingOn),
      rejected: (binding, error) => {
        this.#runtime.logger.warn(
          { identity: identity.name, 'x5t#S256': binding.x5tS256, reason: error.reason },
          'upstream rejected the binding certificate; minting a fresh one and retrying once',
        )
        identity.invalidateBinding(binding)
      },
    })
  }

  async #fromCache(
    identity: Identity,
    scope: NormalisedScope,
    cae: CaeRequest,
    binding: BindingCertificate | undefined,
    signal: AbortSignal,
    waitingOn: { key?: string },
  ): Promise<{ token: CachedToken; key: string }> {
    // The key holds the binding asked for, not the one on the answer: an unbound answer
    // (private_key_jwt) may come from an identity whose certificate is still part of its key.
    const key = cacheKey(identity, binding, scope)
    waitingOn.key = key
    const options: AcquireOptions = {}
    if (cae.clientCapabilities?.length) options.clientCapabilities = cae.clientCapabilities
    const acquire = async (fetchSignal: AbortSignal) => {
      // One hint per fetch (the cache runs one per key at a time): every caller waiting on this
      // key reads what upstream asked for while it retries.
      const hint = new RetryAfterHint()
      this.#hints.set(key, hint)
      const fetching = () =>
        identity.acquireToken(scope.scope, binding, AbortSignal.any([fetchSignal, signal]), options)
      let acquired
      try {
        acquired = await (this.#runtime.retryAfterHints?.run(hint, fetching) ?? fetching())
      } finally {
        if (this.#hints.get(key) === hint) this.#hints.delete(key)
      }
      this.#runtime.metrics.observeToken(
        key,
        identity.name,
        scope.scope,
        acquired.expiresOn,
        acquired.binding?.notAfter,
      )
      return acquired
    }
    // Only a CAE request needs the cached token's hash; every other one is an ordinary get.
    if (!asksForRefresh(cae)) return { token: await this.#cache.get(key, acquire), key }
    const cached = this.#cache.peek(key)
    const cachedHash = cached === undefined ? undefined : sha256Hex(cached.accessToken)
    const hashMatches = cae.tokenSha256ToRefresh !== undefined && cae.tokenSha256ToRefresh === cachedHash
    const hashNamesAnother = cae.tokenSha256ToRefresh !== undefined && cached !== undefined && !hashMatches
    const forced = !hashNamesAnother && (hashMatches || cae.claims !== undefined)
    if (!forced) return { token: await this.#cache.get(key, acquire), key }
    if (cae.claims !== undefined) options.claims = cae.claims
    if (cachedHash !== undefined) options.tokenSha256ToRefresh = cachedHash
    this.#runtime.logger.info(
      { identity: identity.name, scope: scope.scope, claims: cae.claims !== undefined },
      'refreshing a token a resource refused (continuous access evaluation)',
    )
    return { token: await this.#cache.forceRefresh(key, acquire), key }
  }
}

/** identity + token type + binding thumbprint (empty when unbound) + normalised scope. */
export function cacheKey(
  identity: Identity,
  binding: BindingCertificate | undefined,
  scope: NormalisedScope,
): string {
  return `${identity.name}\n${identity.tokenType}\n${binding?.x5tS256 ?? ''}\n${scope.scope.toLowerCase()}`
}

/** A claims challenge or a refused token's hash: the caller may need more than the cached token. */
function asksForRefresh(cae: CaeRequest): boolean {
  return cae.claims !== undefined || cae.tokenSha256ToRefresh !== undefined
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}
