import { untilAborted } from '../../core/abort.ts'
import type { Timer } from '../../core/clock.ts'
import type { ManagedIdentitySelector } from '../../config/types.ts'
import { SidecarError, describeError } from '../../core/errors.ts'
import { BindingStore } from '../../pki/binding-store.ts'
import { preloadForge } from '../../pki/forge.ts'
import { KeyPool, softwareKeyFromPrivatePem, type KeyProvider } from '../../pki/key-provider.ts'
import { certificateInfo, publicKeysMatch, type CertificateInfo } from '../../pki/x509.ts'
import type { Runtime } from '../../core/runtime.ts'
import type { ImdsV2Client } from '../../upstream/imds/v2.ts'
import type { BindingCertificate } from '../../model/binding.ts'
import {
  certificateLifetime,
  LONG_LIVED_MS,
  renewalRetryBaseMs,
  type CertificateLifetime,
} from '../certificate-lifetime.ts'
import { spread } from '../../core/jitter.ts'
import { mintBinding, toBinding, type ImdsV2Binding } from './mint-binding.ts'

export type { ImdsV2Binding } from './mint-binding.ts'

export interface ImdsV2BindingCredentialOptions {
  client: ImdsV2Client
  keyProvider: KeyProvider
  selector: ManagedIdentitySelector
  runtime: Runtime
  /** Identity name, for logs and metrics. */
  identity: string
  /** Optional 0600 file that keeps key + certificate across restarts. */
  bindingStorePath?: string
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

/**
 * MSAL renews a binding certificate when less than 24 h remain and never caches one with less
 * (`ManagedIdentity/V2/CertificateCacheEntry.cs` `MinRemainingLifetime`, used by `InMemoryCertificateCache.cs`).
 * Here: the life below which a certificate is never persisted (`certificate-lifetime.ts` scales the
 * renewal and expiry margins to shorter lives).
 */
export const MIN_CACHEABLE_LIFETIME_MS = LONG_LIVED_MS
const RENEW_RETRY_MAX_MS = 15 * 60_000
/** After a failed cold mint, callers get that failure (no IMDS call) for 1 s, 2 s, 4 s … at most 60 s. */
const COLD_RETRY_BASE_MS = 1000
const COLD_RETRY_MAX_MS = 60_000
/** A certificate rejected again within this long of an invalidation-driven re-mint is not re-minted again. */
const REMINT_MIN_INTERVAL_MS = 30_000
const CREDENTIAL_LABEL = 'imds_v2_binding'

type Trigger = 'cold' | 'renewal' | 'store'

/**
 * The IMDS v2 binding certificate of one managed identity: minted on first use (or loaded from the
 * binding store), renewed in the background ahead of expiry, dropped on `invalidate`.
 *
 * - Single-flight: any number of concurrent cold callers cause one getplatformmetadata and one
 *   issuecredential.
 * - Renewal relative to the certificate's own life (`certificate-lifetime.ts`): when less than
 *   `min(24 h, life / 2)` remains — MSAL's 24 h for a 7-day certificate, half-life for a short one —
 *   jittered up to 10 % earlier; callers keep getting the old certificate until the new one is in; a
 *   failed renewal retries with backoff (scaled to the life) while the old one is usable.
 * - A long-lived certificate (≥ 24 h) is renewed in the background whether used or not. A short-lived
 *   one (minutes, hours: MSAL would not cache it; refusing to keep it would make every request an
 *   IMDS round trip) is served from memory only, never persisted, and renewed in the background only
 *   if it was used since it was issued; otherwise the next caller's use triggers the renewal. An idle
 *   identity with 60-second certificates thus costs nothing, a busy one one certificate per half-life.
 * - A failed cold mint is not repeated for every caller: callers get that failure for a back-off
 *   (1 s doubling to 60 s) before IMDS is asked again.
 * - `invalidate` re-mints at most once per 30 s: a certificate Entra keeps refusing is not replaced
 *   on every request.
 * - Every result carries a sequence number; an older one never replaces a newer one.
 */
export class ImdsV2BindingCredential {
  readonly #client: ImdsV2Client
  readonly #pool: KeyPool
  readonly #selector: ManagedIdentitySelector
  readonly #runtime: Runtime
  readonly #identity: string
  readonly #store: BindingStore | undefined
  readonly #abort = new AbortController()
  readonly #invalidated = new Set<string>()

  #current: ImdsV2Binding | undefined
  #lifetime: CertificateLifetime | undefined
  /** Handed out since it was applied: a short-lived certificate is renewed only then. */
  #usedSinceApply = false
  /** The renewal point of an unused short-lived certificate passed: the next use renews. */
  #renewDue = false
  #coldFailures = 0
  #coldError: unknown
  #coldRetryAt = Number.NEGATIVE_INFINITY
  #remintedAt = Number.NEGATIVE_INFINITY
  #warnedShortLived = false
  #currentSeq = 0
  #seq = 0
  #inflight: Promise<ImdsV2Binding> | undefined
  #renewTimer: Timer | undefined
  #renewAt: number | undefined
  #renewFailures = 0
  #storeLoad: Promise<void> | undefined
  #storeLoaded = false
  #storeOps: Promise<void> = Promise.resolve()
  #started = false
  #closed = false

  constructor(options: ImdsV2BindingCredentialOptions) {
    this.#client = options.client
    this.#pool = new KeyPool(options.keyProvider)
    this.#selector = options.selector
    this.#runtime = options.runtime
    this.#identity = options.identity
    this.#store =
      options.bindingStorePath === undefined ? undefined : new BindingStore(options.bindingStorePath)
  }

  /** Pre-generates the next key and loads the binding store in the background. Idempotent. */
  start(): void {
    if (this.#started || this.#closed) return
    this.#started = true
    // The CSR needs node-forge (loaded on first use): load it now, off the first request's path.
    setImmediate(preloadForge)
    void this.#pool.prefill()
    void this.#loadStoreOnce()
  }

  /** `start()`, then resolves once the pre-generated key and the stored binding (if any) are in. */
  async prepared(): Promise<void> {
    this.start()
    await Promise.all([this.#pool.prefill(), this.#loadStoreOnce()])
  }

  /** The binding to use now. Waits only when there is no valid one (cold start, after invalidate). */
  async current(signal?: AbortSignal): Promise<ImdsV2Binding> {
    this.#assertOpen()
    await this.#loadStoreOnce()
    const usable = this.#usable()
    if (usable) {
      this.#usedSinceApply = true
      if (this.#renewDue) {
        this.#renewDue = false
        this.#renew()
      }
      return usable
    }
    if (!this.#inflight && this.#runtime.clock.now() < this.#coldRetryAt) throw this.#coldError
    return untilAborted(this.#mint('cold'), signal)
  }

  /** What `current` would answer without waiting, if it would not wait; never mints. */
  peek(): ImdsV2Binding | undefined {
    if (this.#closed || !this.#storeLoaded) return undefined
    return this.#usable()
  }

  /**
   * Upstream rejected `binding` (invalid_client, TLS failure): if it is the current one, drop it so
   * the next `current` mints a fresh certificate with a fresh key. A stale binding is ignored.
   */
  invalidate(binding: BindingCertificate): void {
    if (this.#current?.binding.x5tS256 !== binding.x5tS256) return
    const now = this.#runtime.clock.now()
    if (now - this.#remintedAt < REMINT_MIN_INTERVAL_MS) {
      this.#runtime.logger.warn(
        { identity: this.#identity, event: 'binding_rejected_again', 'x5t#S256': binding.x5tS256 },
        'IMDS v2 binding certificate rejected again right after a re-mint; keeping it rather than minting one per request',
      )
      return
    }
    this.#remintedAt = now
    this.#invalidated.add(binding.x5tS256)
    this.#current = undefined
    this.#cancelRenewal()
    this.#runtime.logger.warn(
      { identity: this.#identity, event: 'binding_invalidated', 'x5t#S256': binding.x5tS256 },
      'IMDS v2 binding certificate invalidated; the next request mints a new one',
    )
    const store = this.#store
    if (store) this.#queueStore(() => store.remove())
  }

  get status(): ImdsV2BindingStatus {
    return {
      x5tS256: this.#current?.binding.x5tS256,
      notAfter: this.#current?.binding.notAfter,
      renewAt: this.#renewAt,
      renewing: this.#inflight !== undefined,
      consecutiveRenewalFailures: this.#renewFailures,
    }
  }

  /** Cancels timers and in-flight IMDS calls; waits for pending store writes. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#cancelRenewal()
    this.#abort.abort(new SidecarError('shutting_down', 'credential closed'))
    this.#pool.close()
    await this.#inflight?.catch(() => undefined)
    await this.#storeOps
  }

  #assertOpen(): void {
    if (this.#closed)
      throw new SidecarError('shutting_down', `identity ${this.#identity}: credential is closed`)
  }

  #usable(): ImdsV2Binding | undefined {
    const current = this.#current
    const lifetime = this.#lifetime
    if (current && lifetime && this.#runtime.clock.now() < lifetime.usableUntil) return current
    return undefined
  }

  #mint(trigger: Trigger): Promise<ImdsV2Binding> {
    if (this.#inflight) return this.#inflight
    const seq = ++this.#seq
    const promise = this.#doMint(seq, trigger).finally(() => {
      if (this.#inflight === promise) this.#inflight = undefined
    })
    this.#inflight = promise
    if (trigger === 'cold') {
      promise.then(
        () => {
          this.#coldFailures = 0
          this.#coldRetryAt = Number.NEGATIVE_INFINITY
        },
        (error: unknown) => {
          if (this.#closed) return
          this.#coldFailures++
          this.#coldError = error
          this.#coldRetryAt =
            this.#runtime.clock.now() +
            Math.min(COLD_RETRY_BASE_MS * 2 ** (this.#coldFailures - 1), COLD_RETRY_MAX_MS)
        },
      )
    }
    return promise
  }

  async #doMint(seq: number, trigger: Trigger): Promise<ImdsV2Binding> {
    const result = await mintBinding(
      { client: this.#client, pool: this.#pool, selector: this.#selector, clock: this.#runtime.clock },
      this.#abort.signal,
    )
    this.#apply(seq, result, trigger)
    return result
  }

  #apply(seq: number, result: ImdsV2Binding, trigger: Trigger): void {
    const { logger, metrics, clock } = this.#runtime
    const x5t = result.binding.x5tS256
    if (this.#closed || seq < this.#currentSeq || this.#invalidated.has(x5t)) {
      logger.debug(
        { identity: this.#identity, 'x5t#S256': x5t, seq },
        'discarding an outdated IMDS v2 binding',
      )
      return
    }
    this.#current = result
    this.#currentSeq = seq
    const lifetime = certificateLifetime(clock.now(), result.binding.notAfter, this.#runtime.random)
    this.#lifetime = lifetime
    this.#usedSinceApply = trigger === 'cold'
    this.#renewDue = false
    metrics.credentialExpiry.set(
      { identity: this.#identity, credential: CREDENTIAL_LABEL },
      Math.floor(result.binding.notAfter / 1000),
    )

    const shortLived = !lifetime.longLived
    const fields = {
      identity: this.#identity,
      event:
        trigger === 'store' ? 'binding_loaded' : trigger === 'renewal' ? 'binding_renewed' : 'binding_minted',
      'x5t#S256': x5t,
      not_after: new Date(result.binding.notAfter).toISOString(),
      key_protection: result.binding.keyProtection,
      identity_type: result.identityType,
      client_id: result.clientId,
    }
    if (shortLived) {
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
    } else {
      logger.info(
        fields,
        trigger === 'store'
          ? 'IMDS v2 binding certificate loaded from store'
          : 'IMDS v2 binding certificate issued',
      )
    }

    this.#setRenewal(Math.max(0, lifetime.renewAt - clock.now()))
    const store = this.#store
    if (store && trigger !== 'store' && !shortLived) {
      this.#queueStore(() =>
        store.save({
          selector: selectorKey(this.#selector),
          clientId: result.clientId,
          tenantId: result.tenantId,
          tokenEndpoint: result.tokenEndpoint,
          identityType: result.identityType,
          certificatePem: result.binding.certificatePem,
          privateKeyPem: result.binding.privateKeyPem,
          keyProtection: result.binding.keyProtection,
        }),
      )
    }
  }

  #setRenewal(delayMs: number): void {
    this.#cancelRenewal()
    if (this.#closed) return
    this.#renewAt = this.#runtime.clock.now() + delayMs
    this.#renewTimer = this.#runtime.clock.setTimer(delayMs, () => this.#renewalDue())
  }

  #cancelRenewal(): void {
    this.#renewTimer?.cancel()
    this.#renewTimer = undefined
    this.#renewAt = undefined
  }

  /** The renewal point: renew now, unless a short-lived certificate went unused (then on next use). */
  #renewalDue(): void {
    this.#renewTimer = undefined
    this.#renewAt = undefined
    if (this.#closed) return
    if (this.#lifetime?.longLived || this.#usedSinceApply) {
      this.#renew()
      return
    }
    this.#renewDue = true
    this.#runtime.logger.debug(
      { identity: this.#identity, event: 'binding_renewal_deferred' },
      'short-lived IMDS v2 binding certificate unused since issued; renewing on next use',
    )
  }

  #renew(): void {
    this.#cancelRenewal()
    if (this.#closed) return
    this.#mint('renewal').then(
      () => {
        this.#renewFailures = 0
      },
      (error: unknown) => {
        if (this.#closed) return
        this.#renewFailures++
        const current = this.#usable()
        this.#runtime.logger.warn(
          {
            identity: this.#identity,
            event: 'binding_renewal_failed',
            failures: this.#renewFailures,
            error: describeError(error),
            serving: current?.binding.x5tS256,
          },
          'IMDS v2 binding certificate renewal failed',
        )
        // Without a valid certificate there is nothing to keep serving: the next caller mints.
        if (!current || this.#renewTimer) return
        const base = renewalRetryBaseMs(this.#lifetime?.lifeMs ?? 0)
        const backoff = Math.min(base * 2 ** (this.#renewFailures - 1), RENEW_RETRY_MAX_MS)
        const latest = (this.#lifetime?.usableUntil ?? 0) - this.#runtime.clock.now()
        // Less than a back-off step of use left: a retry at once would be a tight loop (each failure
        // scheduling the next at 0 ms). Let it lapse; the next caller mints, with the cold back-off.
        if (latest < Math.min(base, backoff)) return
        const delay = Math.min(spread(backoff, 0.1, this.#runtime.random), latest)
        // A retry of a renewal that was wanted: not subject to the "unused" check again.
        this.#usedSinceApply = true
        this.#setRenewal(Math.round(delay))
      },
    )
  }

  #loadStoreOnce(): Promise<void> {
    this.#storeLoad ??= this.#loadStore().finally(() => {
      this.#storeLoaded = true
    })
    return this.#storeLoad
  }

  async #loadStore(): Promise<void> {
    const store = this.#store
    if (!store) return
    const seq = ++this.#seq
    const { logger, clock } = this.#runtime
    const log = { identity: this.#identity, path: store.path }
    let stored
    try {
      stored = await store.load()
    } catch (error) {
      // Refused (e.g. group-readable) or unreadable: never use that key. The next mint replaces the file with a 0600 one.
      logger.error(
        { ...log, error: describeError(error) },
        'binding store refused; minting a new binding certificate',
      )
      return
    }
    if (!stored) return
    let why: string | undefined
    let info: CertificateInfo | undefined
    try {
      info = certificateInfo(stored.certificatePem)
      if (stored.selector !== selectorKey(this.#selector))
        why = 'it belongs to another managed identity selector'
      else if (!publicKeysMatch(stored.certificatePem, stored.privateKeyPem))
        why = 'its key does not match its certificate'
      else if (info.notAfter - clock.now() <= MIN_CACHEABLE_LIFETIME_MS)
        why = 'its certificate has 24 h or less left'
    } catch {
      why = 'it does not hold a readable certificate and key'
    }
    if (why || !info) {
      logger.info({ ...log, why }, 'stored IMDS v2 binding not reused')
      return
    }
    const key = softwareKeyFromPrivatePem(stored.privateKeyPem)
    const result = toBinding(info, key, stored)
    this.#apply(seq, result, 'store')
  }

  /** Store writes and removals run one at a time, in order, so a removal never undoes a later save. */
  #queueStore(op: () => Promise<void>): void {
    this.#storeOps = this.#storeOps.then(op).catch((error: unknown) => {
      this.#runtime.logger.warn(
        { identity: this.#identity, error: describeError(error) },
        'binding store update failed',
      )
    })
  }
}

/** Stable key of a selector, stored with a binding so a changed config never reuses it. */
export function selectorKey(selector: ManagedIdentitySelector): string {
  return selector.kind === 'system' ? 'system' : `${selector.kind}:${selector.value.toLowerCase()}`
}
