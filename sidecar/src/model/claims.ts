/**
 * Continuous access evaluation (CAE) inputs of one token request, as a caller gives them
 * (contract §3), already parsed and checked by the HTTP layer (`http/wire/cae-query.ts`): a claims challenge from a resource's `WWW-Authenticate`, the hash of the token the
 * resource refused, and client capabilities (`xms_cc`, sent by msal-node to IMDS-style endpoints).
 */
export interface CaeRequest {
  /** The claims challenge as a JSON object text (decoded when it came base64-encoded). */
  claims?: string
  /** Lower-case hex SHA-256 of the refused token. */
  tokenSha256ToRefresh?: string
  /** Capabilities the caller announced (`xms_cc=cp1,…`); added to the identity's own. */
  clientCapabilities?: string[]
}

/** Configured capabilities first, then the caller's, without repeats. */
export function unionCapabilities(...lists: (readonly string[] | undefined)[]): string[] {
  return [...new Set(lists.flatMap((list) => list ?? []))]
}

/**
 * The `claims` parameter for an Entra request: the challenge merged with the client capabilities
 * as `{"access_token":{"xms_cc":{"values":[…]}}}`, as MSAL.NET does (ClaimsHelper: capabilities
 * JSON merged into the claims object, nested objects merged, arrays united). Undefined when there
 * is neither. MSAL sends the capabilities on every request once configured, so Entra issues
 * CAE-capable tokens from the first one on.
 */
export function mergeClaimsAndCapabilities(
  claims: string | undefined,
  capabilities: readonly string[],
): string | undefined {
  const challenge = claims === undefined ? undefined : (JSON.parse(claims) as Record<string, unknown>)
  if (capabilities.length === 0) return challenge === undefined ? undefined : JSON.stringify(challenge)
  const announced = { access_token: { xms_cc: { values: [...capabilities] } } }
  return JSON.stringify(challenge === undefined ? announced : deepMerge(challenge, announced))
}

function deepMerge(
  target: Record<string, unknown>,
  source: Record<string, unknown>,
): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...target }
  for (const [key, value] of Object.entries(source)) {
    const existing = merged[key]
    if (isObject(existing) && isObject(value)) merged[key] = deepMerge(existing, value)
    else if (Array.isArray(existing) && Array.isArray(value))
      merged[key] = [...new Set([...existing, ...value])]
    else merged[key] = value
  }
  return merged
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
