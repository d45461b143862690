import { SidecarError } from '../core/errors.ts'
import { parseExpiry, parseSeconds } from './expiry.ts'

/** The longest access-token lifetime trusted (contract §3): Entra issues 1–24 h, IMDS about 24 h. */
export const MAX_TOKEN_LIFETIME_MS = 48 * 3600_000

export interface TokenLifetimeInput {
  accessToken: string
  /** As upstream sent them: numbers, numeric strings, dates, or absent. */
  expiresIn: unknown
  expiresOn: unknown
  /** `refresh_in`, when upstream gave it. */
  refreshIn?: unknown
  /** Epoch ms: the binding certificate's end, for a token bound to (or obtained with) it. */
  notAfter?: number
  now: number
  /** For the error: `scheme://host/path` and the HTTP status. */
  endpoint: string
  status: number
}

/**
 * The one place where an upstream answer's lifetime becomes a deadline (contract §3): the smallest
 * of what `expires_in` and `expires_on` say and, when the token is a JWT, its `exp`; then no later
 * than a binding certificate's `notAfter`. A lifetime above 48 h, zero or negative (a token expired
 * on arrival), a field that is present but not a number or date, or no lifetime at all is a
 * malformed answer (502), so it is never cached. A token that is not a JWT (an opaque token) takes
 * its lifetime from the answer alone.
 *
 * @returns `expiresOn` (epoch ms) and `refreshOn` when upstream's `refresh_in` falls before it.
 */
export function tokenLifetime(input: TokenLifetimeInput): { expiresOn: number; refreshOn?: number } {
  const { now } = input
  const malformed = (what: string) =>
    new SidecarError('upstream_error', `${input.endpoint} answered ${input.status} with ${what}`, {
      reason: 'malformed_response',
      upstream: { endpoint: input.endpoint, status: input.status },
    })
  const candidates: number[] = []
  if (present(input.expiresIn)) {
    const seconds = parseSeconds(input.expiresIn)
    if (seconds === undefined) throw malformed('an expires_in that is not a number of seconds')
    candidates.push(now + seconds * 1000)
  }
  if (present(input.expiresOn)) {
    const at = parseExpiry(input.expiresOn, now)
    if (at === undefined) throw malformed('an expires_on that is not a time')
    candidates.push(at)
  }
  if (candidates.length === 0) throw malformed('neither expires_in nor expires_on')
  const exp = jwtExp(input.accessToken)
  if (exp !== undefined) candidates.push(exp)
  const expiresOn = Math.min(...candidates)
  const lifeMs = expiresOn - now
  if (!Number.isFinite(lifeMs) || lifeMs <= 0)
    throw malformed('a token that has already expired (lifetime zero or negative)')
  if (lifeMs > MAX_TOKEN_LIFETIME_MS)
    throw malformed(`a token lifetime of ${Math.round(lifeMs / 3600_000)} h, above the 48 h trusted`)
  const bounded = Math.min(expiresOn, input.notAfter ?? Infinity)
  if (bounded <= now) throw malformed('a token bound to a certificate that has already expired')
  const result: { expiresOn: number; refreshOn?: number } = { expiresOn: bounded }
  const refreshIn = present(input.refreshIn) ? parseSeconds(input.refreshIn) : undefined
  if (refreshIn !== undefined && refreshIn > 0 && now + refreshIn * 1000 < bounded)
    result.refreshOn = now + refreshIn * 1000
  return result
}

function present(value: unknown): boolean {
  return value !== undefined && value !== null && value !== ''
}

/**
 * The `exp` of a JWT (epoch ms), undefined when the token is not a JWS compact JWT (an opaque or
 * encrypted token) or carries no numeric `exp`. Not verified: only ever used to shorten a lifetime.
 */
export function jwtExp(token: string): number | undefined {
  const parts = token.split('.')
  if (parts.length !== 3) return undefined
  try {
    const claims: unknown = JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString('utf8'))
    if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) return undefined
    const exp = (claims as Record<string, unknown>)['exp']
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined
  } catch {
    return undefined
  }
}
