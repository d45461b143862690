import type { CallerAccess } from './callers/caller-access.ts'
import type { CallerGuardOptions } from './callers/caller-guard.ts'
import { imdsAddress } from './imds-host.ts'

/**
 * What the token routes check about a caller (contract §2 `callers`, §3), as configured: both front
 * doors (the hono app and the fast lane) read this one description.
 */
export interface CallerChecks {
  requireMetadataHeader: boolean
  exposePrivateKey: boolean
  /** Current caller secret (X-IDENTITY-HEADER), or undefined when none is configured. */
  secret: () => string | undefined
  hostAllowed: (hostname: string) => boolean
  /** `callers.allow`; every caller when absent. */
  access?: CallerAccess
}

/**
 * The caller guard's options for a family of token routes, built here once for both front doors:
 * - `token`: `/token`, `/credential`, the IMDS route, `/downstream`;
 * - `imds-address`: the IMDS route when `Host` names IMDS itself (a redirected IMDS request), the
 *   only host it then accepts;
 * - `agent-id`: the AgentID routes, which demand neither `Metadata` nor the caller secret.
 * `callers.allow` (`authorizeCaller`) is the hono app's to add: the fast lane stands aside then.
 */
export function callerGuardOptions(
  callers: CallerChecks,
  family: 'token' | 'imds-address' | 'agent-id',
): CallerGuardOptions {
  switch (family) {
    case 'token':
      return {
        requireMetadataHeader: callers.requireMetadataHeader,
        secret: callers.secret,
        hostAllowed: callers.hostAllowed,
      }
    case 'imds-address':
      return {
        requireMetadataHeader: callers.requireMetadataHeader,
        secret: callers.secret,
        hostAllowed: (hostname) => hostname === imdsAddress,
      }
    case 'agent-id':
      return { requireMetadataHeader: false, secret: () => undefined, hostAllowed: callers.hostAllowed }
  }
}
