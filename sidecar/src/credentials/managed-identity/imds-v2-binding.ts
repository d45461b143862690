import type { ManagedIdentitySelector } from '../../config/types.ts'
import { describeError } from '../../core/errors.ts'
import type { Runtime } from '../../core/runtime.ts'
import type { BindingCertificate } from '../../model/binding.ts'
import { preloadForge } from '../../pki/forge.ts'
import { KeyPool, type KeyProvider } from '../../pki/key-provider.ts'
import type { ImdsV2Client } from '../../upstream/imds/v2.ts'
import { certificateRenewal } from '../certificate-lifetime.ts'
import { RenewingValue, type RenewalLog } from '../renewing.ts'
import { mintBinding, type ImdsV2Binding } from './mint-binding.ts'
import { storedBinding } from './stored-binding.ts'

export interface ImdsV2BindingCredentialOptions {
  client: ImdsV2Client
  keyProvider: KeyProvider
  selector: ManagedIdentitySelector
  runtime: Runtime
  /** Identity name, for logs and metrics. */
  identity: string
  /** Optional 0600 file that keeps key + certificate across restarts. */
  bindingStorePath?: string
  /** Its config key, for log lines (default `bindingStore`). */
  bindingStoreKey?: string
}

/** What `status` reports, for /credential, doctor and tests. */
export interface ImdsV2BindingStatus {
  x5tS256: string | undefined
  notAfter: number | undefined
  /** When the background renewal is due (epoch ms), if scheduled. */
  renewAt: number | undefined
  renewing: boolean
  consecutiveRenewalFailures: number
}

/** After a failed cold mint, callers get that failure (no IMDS call) for 1 s, 2 s, 4 s … at most 60 s. */
const COLD_RETRY = { baseMs: 1000, maxMs: 60_000 }
/** A certificate rejected again within this long of an invalidation-driven re-mint is not re-minted again. */
const REMINT_MIN_INTERVAL_MS = 30_000
const CREDENTIAL_LABEL = 'imds_v2_binding'

/**
 * The IMDS v2 binding certificate of one managed identity, on the renewal engine (`RenewingValue`):
 * minted on first use (`mint-binding.ts`) or loaded from the binding store (`stored-binding.ts`),
 * renewed in the background ahead of expiry, dropped on `invalidate`.
 *
 * - Single-flight: any number of concurrent cold callers cause one getplatformmetadata and one
 *   issuecredential.
 * - Renewal relative to the certificate's own life (`certificate-lifetime.ts`): when less than
 *   `min(24 h, life / 2)` remains — MSAL's 24 h for a 7-day certificate, half-life for a short one —
 *   jittered up to 10 % earlier; callers keep getting the old certificate until the new one is in; a
 *   failed renewal retries with backoff (scaled to the life) while the old one is usable. A
 *   short-lived certificate is never persisted and renewed in the background only if used.
 * - A failed cold mint is not repeated for every caller: callers get that failure for a back-off
 *   (1 s doubling to 60 s) before IMDS is asked again.
 * - `invalidate` re-mints at most once per 30 s: a certificate Entra keeps refusing is not replaced
 *   on every request. A mint already under way is kept: it brings a fresh key and certificate.
 * - Every result carries a sequence number; an older one never replaces a newer one.
 */
export class ImdsV2BindingCredential {
  readonly #runtime: Runtime
  readonly #identity: string
  readonly #pool: KeyPool
  readonly #value: RenewingValue<ImdsV2Binding>
  /** Set by `start` and by `close`: a closed credential never starts. */
  #started = false
  #warnedShortLived = false

  constructor(options: ImdsV2BindingCredentialOptions) {
    const { runtime, identity, selector, client } = options
    this.#runtime = runtime
    this.#identity = identity
    const pool = new KeyPool(options.keyProvider)
    this.#pool = pool
    const path = options.bindingStorePath
    this.#value = new RenewingValue({
      runtime,
      identity,
      label: CREDENTIAL_LABEL,
      fetch: (signal) => mintBinding({ client, pool, selector, clock: runtime.clock }, signal),
      expiresOn: (value) => value.binding.notAfter,
      policy: certificateRenewal,
      coldRetry: COLD_RETRY,
      minInvalidationIntervalMs: REMINT_MIN_INTERVAL_MS,
      fetchOutlivesInvalidation: true,
      ...(path === undefined
        ? {}
        : {
            store: storedBinding({
              path,
              selector,
              runtime,
              identity,
              ...(options.bindingStoreKey === undefined ? {} : { key: options.bindingStoreKey }),
            }),
          }),
      log: this.#log(),
    })
  }

  /** Pre-generates the next key and loads the binding store in the background. Idempotent. */
  start(): void {
    if (this.#started) return
    this.#started = true
    // The CSR needs node-forge (loaded on first use): load it now, off the first request's path.
    setImmediate(preloadForge)
    void this.#pool.prefill()
    this.#value.start()
  }

  /** `start()`, then resolves once the pre-generated key and the stored binding (if any) are in. */
  async prepared(): Promise<void> {
    this.start()
    await Promise.all([this.#pool.prefill(), this.#value.loaded()])
  }

  /** The binding to use now. Waits only when there is no valid one (cold start, after invalidate). */
  current(signal?: AbortSignal): Promise<ImdsV2Binding> {
    return this.#value.current(signal)
  }

  /** What `current` would answer without waiting, if it would not wait; never mints. */
  peek(): ImdsV2Binding | undefined {
    return this.#value.peek()
  }

  /**
   * Upstream rejected `binding` (invalid_client, TLS failure): if it is the current one, drop it so
   * the next `current` mints a fresh certificate with a fresh key. A stale binding is ignored.
   */
  invalidate(binding: BindingCertificate): void {
    if (this.#value.status.value?.binding.x5tS256 !== binding.x5tS256) return
    if (!this.#value.invalidate()) {
      this.#runtime.logger.warn(
        { identity: this.#identity, event: 'binding_rejected_again', 'x5t#S256': binding.x5tS256 },
        'IMDS v2 binding certificate rejected again right after a re-mint; keeping it rather than minting one per request',
      )
      return
    }
    this.#runtime.logger.warn(
      { identity: this.#identity, event: 'binding_invalidated', 'x5t#S256': binding.x5tS256 },
      'IMDS v2 binding certificate invalidated; the next request mints a new one',
    )
  }

  get status(): ImdsV2BindingStatus {
    const status = this.#value.status
    return {
      x5tS256: status.value?.binding.x5tS256,
      notAfter: status.value?.binding.notAfter,
      renewAt: status.renewAt,
      renewing: status.renewing,
      consecutiveRenewalFailures: status.failures,
    }
  }

  /** Cancels timers and in-flight IMDS calls; waits for pending store writes. */
  async close(): Promise<void> {
    this.#started = true
    const closing = this.#value.close()
    this.#pool.close()
    await closing
  }

  /** The binding's log lines and expiry gauge. */
  #log(): RenewalLog<ImdsV2Binding> {
    const identity = this.#identity
    const { logger, metrics } = this.#runtime
    return {
      applied: (result, lifetime, arrival) => {
        metrics.credentialExpiry.set(
          { identity, credential: CREDENTIAL_LABEL },
          Math.floor(result.binding.notAfter / 1000),
        )
        const fields = {
          identity,
          event:
            arrival === 'loaded'
              ? 'binding_loaded'
              : arrival === 'renewed'
                ? 'binding_renewed'
                : 'binding_minted',
          'x5t#S256': result.binding.x5tS256,
          not_after: new Date(result.binding.notAfter).toISOString(),
          key_protection: result.binding.keyProtection,
          identity_type: result.identityType,
          client_id: result.clientId,
        }
        if (lifetime.persist) {
          logger.info(
            fields,
            arrival === 'loaded'
              ? 'IMDS v2 binding certificate loaded from store'
              : 'IMDS v2 binding certificate issued',
          )
          return
        }
        const short = {
          ...fields,
          life_s: Math.round(lifetime.lifeMs / 1000),
          renew_at: new Date(lifetime.renewAt).toISOString(),
        }
        // Once per credential: with minute-long certificates a warning per renewal would be noise.
        if (this.#warnedShortLived) logger.info(short, 'IMDS v2 binding certificate issued (short-lived)')
        else
          logger.warn(
            short,
            'IMDS v2 issued a binding certificate with less than 24 h left; serving it from memory only (never persisted) and renewing it at half its life',
          )
        this.#warnedShortLived = true
      },
      discarded: (result, seq) => {
        logger.debug(
          { identity, 'x5t#S256': result.binding.x5tS256, seq },
          'discarding an outdated IMDS v2 binding',
        )
      },
      renewalFailed: (error, failures, serving) => {
        logger.warn(
          {
            identity,
            event: 'binding_renewal_failed',
            failures,
            error: describeError(error),
            serving: serving?.binding.x5tS256,
          },
          'IMDS v2 binding certificate renewal failed',
        )
      },
      renewalDeferred: () => {
        logger.debug(
          { identity, event: 'binding_renewal_deferred' },
          'short-lived IMDS v2 binding certificate unused since issued; renewing on next use',
        )
      },
    }
  }
}
