import type { Random } from './clock.ts'

/**
 * The one way this daemon spreads its timers, so that many identities, tokens or replicas started
 * together do not renew, refresh or retry together. Each helper draws one `random()`.
 */

/** `ms`, up to `fraction` earlier (a refresh or renewal point that must not come later). */
export function upToEarlier(ms: number, fraction: number, random: Random): number {
  return ms * (1 - fraction + fraction * random())
}

/** `ms`, up to `fraction` later (a safety margin that may grow, never shrink). */
export function upToLater(ms: number, fraction: number, random: Random): number {
  return ms * (1 + fraction * random())
}

/** `ms`, spread `fraction` either way (a retry back-off). */
export function spread(ms: number, fraction: number, random: Random): number {
  return ms * (1 - fraction + 2 * fraction * random())
}
