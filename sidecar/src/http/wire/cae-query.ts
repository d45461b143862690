import type { Context } from 'hono'
import {
  parseCapabilities,
  parseClaimsChallenge,
  parseTokenHash,
  type CaeRequest,
} from '../../model/claims.ts'
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
