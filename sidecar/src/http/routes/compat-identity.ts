import type { ManagedIdentitySelector } from '../../config/types.ts'
import { SidecarError } from '../../core/errors.ts'
import type { Identity } from '../../identities/identity.ts'
import type { ServedToken } from '../../identities/identity.ts'
import type { TokenService } from '../../tokens/token-service.ts'

/** A user-assigned selector as an IMDS or App Service client sends it (at most one is set). */
export interface CompatSelector {
  clientId?: string | undefined
  objectId?: string | undefined
  resourceId?: string | undefined
}

/**
 * The configured identity an IMDS / App Service style request names. No selector means `fallback`
 * (the caller's first `callers.allow` identity) or else `defaultIdentity`; a selector is matched
 * case-insensitively against the managed identities' configured selectors (Azure ids are
 * case-insensitive GUIDs and ARM ids), and a client id also against the confidential clients'
 * `clientId`. Errors use the words
 * IMDS uses, which the SDKs show to their users as they are.
 */
export function compatIdentity(
  tokens: TokenService,
  fallback: string | undefined,
  selector: CompatSelector,
): Identity {
  const given = (['clientId', 'objectId', 'resourceId'] as const).filter((k) => selector[k] !== undefined)
  if (given.length > 1) throw new SidecarError('invalid_request', 'Multiple identity selectors specified')
  const kind = given[0]
  const identity =
    kind === undefined ? tokens.identity(fallback) : findBySelector(tokens, kind, selector[kind] ?? '')
  if (identity.tokenType === 'mtls_pop' || identity.config.protocolScheme === 'MTLS_POP') {
    throw new SidecarError(
      'invalid_request',
      `Identity "${identity.name}" is configured for mTLS PoP (protocolScheme: MTLS_POP); this route serves ` +
        'Bearer tokens only. Use GET /token, which returns the token with its binding certificate, or the ' +
        '/downstream proxy',
      { reason: 'pop_identity_on_bearer_route' },
    )
  }
  return identity
}

function findBySelector(
  tokens: TokenService,
  kind: Exclude<ManagedIdentitySelector['kind'], 'system'>,
  value: string,
): Identity {
  const wanted = value.trim().toLowerCase()
  const identities = [...tokens.identities.values()]
  const managed = identities.filter(
    (i) =>
      i.config.kind === 'managedIdentity' &&
      i.config.selector.kind === kind &&
      i.config.selector.value.toLowerCase() === wanted,
  )
  // A client id may also name a confidential-client identity (contract §5: an app container's own
  // AZURE_CLIENT_ID, which its SDK sends as client_id, is served); a managed identity wins.
  const matches =
    managed.length > 0 || kind !== 'clientId'
      ? managed
      : identities.filter(
          (i) => i.config.kind === 'confidentialClient' && i.config.clientId.toLowerCase() === wanted,
        )
  // Two identities may share a managed identity or an app (one Bearer, one MTLS_POP): prefer the
  // Bearer one, which this route can serve.
  const found = matches.find((i) => i.tokenType === 'Bearer') ?? matches[0]
  if (!found)
    throw new SidecarError('invalid_request', 'Identity not found', { reason: 'identity_not_found' })
  return found
}

/**
 * The `client_id` IMDS and App Service put in their answers: the configured user-assigned client id
 * when that is the selector, else the `appid` (v1 tokens) or `azp` (v2 tokens) claim of the token,
 * read without verification (the token came from upstream; this only labels it). Undefined for an
 * opaque token.
 */
export function compatClientId(served: ServedToken): string | undefined {
  const { config } = served.identity
  if (config.kind === 'managedIdentity' && config.selector.kind === 'clientId') return config.selector.value
  if (config.kind === 'confidentialClient') return config.clientId
  const claims = unverifiedClaims(served.token.accessToken)
  const id = claims?.['appid'] ?? claims?.['azp']
  return typeof id === 'string' ? id : undefined
}

/** `nbf` of a JWT access token (epoch seconds), when it is a JWT that has one. */
export function compatNotBefore(served: ServedToken): number | undefined {
  const nbf = unverifiedClaims(served.token.accessToken)?.nbf
  return typeof nbf === 'number' ? nbf : undefined
}

/**
 * The payload of a compact JWS, unverified (it only labels a token upstream gave us). Decoded here
 * rather than with jose so that a managed-identity-only daemon never loads jose.
 */
function unverifiedClaims(token: string): Record<string, unknown> | undefined {
  const parts = token.split('.')
  if (parts.length !== 3 || !parts[1]) return undefined
  try {
    const claims: unknown = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'))
    return typeof claims === 'object' && claims !== null && !Array.isArray(claims)
      ? (claims as Record<string, unknown>)
      : undefined
  } catch {
    return undefined
  }
}

/** Two spellings of one selector: either may be given, not both. */
export function oneOf(a: string | undefined, b: string | undefined): string | undefined {
  if (a !== undefined && b !== undefined)
    throw new SidecarError('invalid_request', 'Multiple identity selectors specified')
  return a ?? b
}
