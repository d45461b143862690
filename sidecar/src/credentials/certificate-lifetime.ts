import { upToLater } from '../core/jitter.ts'

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

/** MSAL's renewal margin, and the life from which a certificate counts as long-lived (persisted, renewed unprompted). */
export const LONG_LIVED_MS = 24 * 3600_000
/** A certificate this close to expiry is not handed out: the TLS handshake and token call need time. */
const MAX_EXPIRY_SKEW_MS = 5 * 60_000

export interface CertificateLifetime {
  /** Epoch ms when it was received. */
  receivedAt: number
  notAfter: number
  /** `notAfter − receivedAt`. */
  lifeMs: number
  /** At least 24 h of life when received: renewed in the background whether used or not, and persisted. */
  longLived: boolean
  /** Epoch ms from which it should be replaced (jittered up to 10 % of the margin earlier). */
  renewAt: number
  /** Epoch ms from which it is no longer handed out. */
  usableUntil: number
}

/**
 * @param random in [0, 1): spreads a fleet's renewals; only ever earlier than the margin.
 * @example certificateLifetime(now, now + 7 * DAY, () => 0).renewAt // now + 6 days
 */
export function certificateLifetime(
  receivedAt: number,
  notAfter: number,
  random: () => number,
): CertificateLifetime {
  const lifeMs = Math.max(0, notAfter - receivedAt)
  const usableUntil = notAfter - Math.min(MAX_EXPIRY_SKEW_MS, lifeMs / 10)
  const margin = upToLater(Math.min(LONG_LIVED_MS, lifeMs / 2), 0.1, random)
  const renewAt = Math.round(Math.min(usableUntil, Math.max(receivedAt, notAfter - margin)))
  return { receivedAt, notAfter, lifeMs, longLived: lifeMs >= LONG_LIVED_MS, renewAt, usableUntil }
}

/** Back-off base after a failed renewal: 1/20 of the life, between 1 s and 30 s. */
export function renewalRetryBaseMs(lifeMs: number): number {
  return Math.min(30_000, Math.max(1000, lifeMs / 20))
}
