import { spread, upToLater } from '../core/jitter.ts'
import type { RenewalPolicy } from './renewing.ts'
import { exponentialBackoff } from '../core/backoff.ts'

/**
 * When to renew, and until when to hand out, a binding certificate — relative to its own life.
 *
 * MSAL.NET renews an IMDS v2 certificate when less than 24 h remain and never caches one with less
 * (`ManagedIdentity/V2/CertificateCacheEntry.cs` `MinRemainingLifetime`), which assumes ~7-day
 * certificates. Other platforms issue certificates for hours or minutes: a fixed 24 h rule would
 * call every one of them "due" at once, and a fixed 5-minute expiry margin would call a 60-second
 * certificate unusable on arrival — one issuecredential, one key and one Entra call per request.
 * So both margins scale with the certificate's life as received (`notAfter` − receipt; a
 * back-dated `notBefore` gives no extra life):
 *
 * - renew when less than `min(24 h, life / 2)` remains — MSAL's rule for a 7-day certificate
 *   (renewed after ~6 days), half-life for one that lives a day or less;
 * - hand out until `min(5 min, life / 10)` before `notAfter`.
 */

/**
 * MSAL's renewal margin, and the life from which a certificate counts as long-lived (persisted,
 * renewed unprompted): MSAL renews a binding certificate when less than 24 h remain and never caches
 * one with less (`ManagedIdentity/V2/CertificateCacheEntry.cs` `MinRemainingLifetime`, used by
 * `InMemoryCertificateCache.cs`). A stored binding with this much or less left is not reused.
 */
export const LONG_LIVED_MS = 24 * 3600_000
/** A certificate this close to expiry is not handed out: the TLS handshake and token call need time. */
const MAX_EXPIRY_SKEW_MS = 5 * 60_000
const RENEW_RETRY_MAX_MS = 15 * 60_000

/**
 * The binding-certificate policy. A long-lived certificate (≥ 24 h) is renewed in the background
 * whether used or not, and persisted. A short-lived one (minutes, hours: MSAL would not cache it;
 * refusing to keep it would make every request an IMDS round trip) is served from memory only, never
 * persisted, and renewed in the background only if it was used since it was issued; otherwise the
 * next caller's use triggers the renewal. An idle identity with 60-second certificates thus costs
 * nothing, a busy one one certificate per half-life.
 *
 * @example certificateRenewal.lifetime(now, now + 7 * DAY, () => 0).renewAt // now + 6 days
 */
export const certificateRenewal: RenewalPolicy = {
  lifetime(receivedAt, notAfter, random) {
    const lifeMs = Math.max(0, notAfter - receivedAt)
    const usableUntil = notAfter - Math.min(MAX_EXPIRY_SKEW_MS, lifeMs / 10)
    // Jittered up to 10 % of the margin earlier: spreads a fleet's renewals, never later than the margin.
    const margin = upToLater(Math.min(LONG_LIVED_MS, lifeMs / 2), 0.1, random)
    const renewAt = Math.round(Math.min(usableUntil, Math.max(receivedAt, notAfter - margin)))
    const longLived = lifeMs >= LONG_LIVED_MS
    return { lifeMs, renewAt, usableUntil, renewWhenIdle: longLived, persist: longLived }
  },

  /** Back-off scaled to the life: 1/20 of it (between 1 s and 30 s), doubling to 15 min. */
  retryDelay(failures, lifetime, now, random) {
    const base = Math.min(30_000, Math.max(1000, lifetime.lifeMs / 20))
    const backoff = exponentialBackoff(base, RENEW_RETRY_MAX_MS, failures)
    const latest = lifetime.usableUntil - now
    // Less than a back-off step of use left: a retry at once would be a tight loop (each failure
    // scheduling the next at 0 ms). Let it lapse; the next caller mints, with the cold back-off.
    if (latest < Math.min(base, backoff)) return undefined
    return Math.min(spread(backoff, 0.1, random), latest)
  },
}
