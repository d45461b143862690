import type { Runtime } from '../core/runtime.ts'
import { SidecarError } from '../core/errors.ts'
import { setLongTimer } from '../core/long-timer.ts'
import { UpstreamWait } from '../core/retry-after.ts'
import { asksForRefresh } from '../identities/cae-refresh.ts'
import type { Identity, ServedToken } from '../identities/identity.ts'
import type { CaeRequest } from '../model/claims.ts'
import type { Scope } from '../model/scope.ts'

export interface TokenServiceOptions {
  runtime: Runtime
  identities: ReadonlyMap<string, Identity>
  defaultIdentity: string
  /** A caller gets an answer by then, even while upstream retries go on in the background. */
  requestDeadlineMs: number
}

/** Our own back-off when upstream gave none: IMDS's retry schedule is 1 + 2 + 4 s. */
const defaultRetryAfterSeconds = 5

/**
 * The identities by name and the request deadline: a caller's token comes from its identity's
 * pipeline (`Identity.token`), raced against `requestDeadlineMs`; close ends every fetch.
 */
export class TokenService {
  readonly #runtime: Runtime
  readonly #identities: ReadonlyMap<string, Identity>
  readonly #defaultIdentity: string
  readonly #deadlineMs: number
  readonly #closing = new AbortController()

  constructor(options: TokenServiceOptions) {
    this.#runtime = options.runtime
    this.#identities = options.identities
    this.#defaultIdentity = options.defaultIdentity
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
   * `identity`'s token for `scope`, within the request deadline. With `cae` (continuous access
   * evaluation, contract §3) it may be a forced refresh (`identities/cae-refresh.ts`).
   */
  async getToken(identity: Identity, scope: Scope, cae: CaeRequest = {}): Promise<ServedToken> {
    // A plain hit needs no deadline timer, no race and no await: the answer is already in memory.
    if (!asksForRefresh(cae)) {
      const hit = identity.cachedToken(scope)
      if (hit) return hit
    }
    const wait = new UpstreamWait()
    return this.withDeadline(
      identity.token(scope, cae, this.#closing.signal, wait),
      () => wait.retryAfterSeconds,
    )
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
}
