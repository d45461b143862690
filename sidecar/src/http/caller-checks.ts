import { SidecarError } from '../core/errors.ts'
import type { CallerAccess } from './callers/caller-access.ts'
import {
  checkCaller,
  secretMatches,
  type CallerGuardOptions,
  type HeaderLookup,
} from './callers/caller-guard.ts'
import { imdsAddress, namesImds } from './imds-host.ts'
import { appServiceApiVersion2017 } from './routes/app-service-compat.ts'

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

/**
 * The caller check a token route declares (`routes/token-routes.ts`):
 * - `token`: the `token` family above;
 * - `imds`: `imds-address` when `Host` names IMDS itself, else `token`;
 * - `app-service`: the caller secret alone (App Service clients send no `Metadata`), in header
 *   `X-IDENTITY-HEADER`, or `secret` for api-version 2017-09-01; without a configured secret the
 *   route does not exist (404).
 */
export type TokenRouteGuard = 'token' | 'imds' | 'app-service'

/** Why a caller may not use a token route with this `guard` (an App Service request's api-version aside), or undefined. */
export type TokenRouteRefusal = (
  guard: TokenRouteGuard,
  header: HeaderLookup,
  apiVersion: () => string | undefined,
) => SidecarError | undefined

/**
 * The token routes' caller checks, as one decision over header values (and App Service's
 * api-version) for both front doors, built once per configuration. `callers.allow` comes after,
 * in the hono app; the fast lane serves only a connection already admitted.
 */
export function tokenRouteRefusal(callers: CallerChecks): TokenRouteRefusal {
  const token = callerGuardOptions(callers, 'token')
  const imdsAddressed = callerGuardOptions(callers, 'imds-address')
  return (guard, header, apiVersion) => {
    switch (guard) {
      case 'token':
        return checkCaller(token, header)
      case 'imds':
        return checkCaller(namesImds(header('host')) ? imdsAddressed : token, header)
      case 'app-service': {
        // Read once: the secret checked below must be the one whose presence opened the route.
        const secret = callers.secret()
        if (secret === undefined) return new SidecarError('not_found', 'No such route')
        const inHeaderSecret = apiVersion() === appServiceApiVersion2017
        const refusal = checkCaller(
          {
            requireMetadataHeader: false,
            // The 2017 dialect's header is checked after Host and forwarding headers.
            secret: () => (inHeaderSecret ? undefined : secret),
            hostAllowed: callers.hostAllowed,
          },
          header,
        )
        if (refusal || !inHeaderSecret || secretMatches(header('secret'), secret)) return refusal
        return new SidecarError('unauthorized', 'Missing or wrong secret header')
      }
    }
  }
}
