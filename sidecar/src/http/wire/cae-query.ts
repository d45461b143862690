import type { Context } from 'hono'
import { SidecarError } from '../../core/errors.ts'
import type { CaeRequest } from '../../model/claims.ts'
import { singleQuery } from './responses.ts'

/**
 * The continuous access evaluation parameters of a token request (contract §3). `/token` takes
 * `claims` and `token_sha256_to_refresh`; the IMDS- and App-Service-compatible routes take what
 * MSI v1 clients send, `token_sha256_to_refresh` and `xms_cc`. A request carrying any of them is
 * not a plain cache lookup: a fast path in front of the routes must hand it to the token service.
 */
export function caeFromQuery(c: Context, accepted: { claims: boolean; xmsCc: boolean }): CaeRequest {
  const cae: CaeRequest = {}
  const claims = accepted.claims ? singleQuery(c, 'claims') : undefined
  if (claims !== undefined) cae.claims = parseClaimsChallenge(claims)
  const hash = singleQuery(c, 'token_sha256_to_refresh')
  if (hash !== undefined) cae.tokenSha256ToRefresh = parseTokenHash(hash)
  const capabilities = accepted.xmsCc ? singleQuery(c, 'xms_cc') : undefined
  if (capabilities !== undefined) cae.clientCapabilities = parseCapabilities(capabilities)
  return cae
}

const maxClaimsLength = 8 * 1024
const capabilityPattern = /^[A-Za-z0-9_.-]{1,64}$/
const maxCapabilities = 16

/**
 * A claims challenge as a resource hands it out: JSON, or base64/base64url of JSON (the
 * `claims="…"` of `WWW-Authenticate` is base64; MSAL and the Azure SDKs pass either on). Returns
 * the JSON text; anything that is not a JSON object is the caller's error.
 */
export function parseClaimsChallenge(raw: string): string {
  const text = raw.trim()
  if (text === '') throw new SidecarError('invalid_request', 'claims is empty')
  if (text.length > maxClaimsLength)
    throw new SidecarError('invalid_request', `claims is longer than ${maxClaimsLength} characters`)
  const candidates = text.startsWith('{') ? [text] : [Buffer.from(text, 'base64').toString('utf8')]
  for (const candidate of candidates) {
    try {
      const parsed: unknown = JSON.parse(candidate)
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed))
        return JSON.stringify(parsed)
    } catch {
      // fall through to the error below
    }
  }
  throw new SidecarError(
    'invalid_request',
    'claims must be a JSON object (or base64 of one), as a resource\'s WWW-Authenticate claims="…" carries it',
  )
}

/** `xms_cc=cp1,cp2` (msal-node joins its capabilities with commas). */
export function parseCapabilities(raw: string): string[] {
  const values = raw
    .split(',')
    .map((value) => value.trim())
    .filter((value) => value !== '')
  if (values.length > maxCapabilities || !values.every((value) => capabilityPattern.test(value))) {
    throw new SidecarError(
      'invalid_request',
      `xms_cc must be a comma-separated list of at most ${maxCapabilities} capability names such as cp1`,
    )
  }
  return values
}

/** `token_sha256_to_refresh`: 64 hex digits (SHA-256 of the access token, as msal-node sends it). */
export function parseTokenHash(raw: string): string {
  const value = raw.trim().toLowerCase()
  if (!/^[0-9a-f]{64}$/.test(value)) {
    throw new SidecarError(
      'invalid_request',
      'token_sha256_to_refresh must be the hex SHA-256 of the refused access token (64 hex digits)',
    )
  }
  return value
}
