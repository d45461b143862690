import { createHash } from 'node:crypto'
import type { CaeRequest } from '../model/claims.ts'
import type { AcquiredToken } from '../model/token.ts'

/** What a forced refresh sends upstream besides the scope (contract §3, continuous access evaluation). */
export interface ForcedRefresh {
  /** The caller's claims challenge. */
  claims?: string
  /** hex SHA-256 of the cached token being replaced (IMDS v1 `token_sha256_to_refresh`). */
  tokenSha256ToRefresh?: string
}

/** A claims challenge or a refused token's hash: the caller may need more than the cached token. */
export function asksForRefresh(cae: CaeRequest): boolean {
  return cae.claims !== undefined || cae.tokenSha256ToRefresh !== undefined
}

/**
 * Whether a CAE request forces a refresh of the entry holding `cached`, and with what:
 * - a hash naming another token than the cached one (already replaced): no, the caller just has
 *   not seen the new token yet, claims or not;
 * - a hash of the cached token, or a claims challenge: yes, sending that hash upstream;
 * - a hash with nothing cached: only when there is also a claims challenge.
 */
export function forcedRefresh(cae: CaeRequest, cached: AcquiredToken | undefined): ForcedRefresh | undefined {
  if (!asksForRefresh(cae)) return undefined
  const cachedHash = cached === undefined ? undefined : sha256Hex(cached.accessToken)
  if (
    cae.tokenSha256ToRefresh !== undefined &&
    cachedHash !== undefined &&
    cae.tokenSha256ToRefresh !== cachedHash
  )
    return undefined
  if (cae.claims === undefined && cachedHash === undefined) return undefined
  return {
    ...(cae.claims === undefined ? {} : { claims: cae.claims }),
    ...(cachedHash === undefined ? {} : { tokenSha256ToRefresh: cachedHash }),
  }
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}
