import { Hono, type Context, type MiddlewareHandler } from 'hono'
import { SidecarError } from '../../core/errors.ts'
import { normaliseScope } from '../../tokens/scope.ts'
import type { ServedToken, TokenService } from '../../tokens/token-service.ts'
import { callerGuard, secretMatches } from '../callers/caller-guard.ts'
import { caeFromQuery } from '../wire/cae-query.ts'
import { singleQuery } from '../wire/responses.ts'
import type { CallerAccess } from '../callers/caller-access.ts'
import { compatClientId, compatIdentity, oneOf, type CompatSelector } from './compat-identity.ts'

export interface AppServiceCompatRoutesDeps {
  tokens: TokenService
  /** Current caller secret (callers.secretFile), or undefined when none is configured. */
  secret: () => string | undefined
  hostAllowed: (hostname: string) => boolean
  /** `callers.allow`: with no selector the caller's first allowed identity is served. */
  access: CallerAccess
}

/** App Service's managed identity answer (api-version 2019-08-01): `expires_on` is a string. */
export interface AppServiceTokenJson {
  access_token: string
  expires_on: string
  resource: string
  token_type: 'Bearer'
  client_id?: string
}

export const appServiceTokenPath = '/msi/token'
/** The dialect msal-node and @azure/identity speak (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`). */
export const appServiceApiVersion = '2019-08-01'
/**
 * App Service's older dialect (also Azure ML's), spoken with `MSI_ENDPOINT` + `MSI_SECRET` by Go
 * adal (`msiTypeAppServiceV20170901`), msrestazure `get_msi_token_webapp` (the Azure CLI) and
 * azure-identity's `AzureMLCredential`: the secret in header `secret`, `clientid` for a
 * user-assigned identity.
 */
export const appServiceApiVersion2017 = '2017-09-01'
/** App Service's revocation version: 2019-08-01 plus `token_sha256_to_refresh`. */
export const appServiceApiVersion2025 = '2025-03-30'
const apiVersions = [appServiceApiVersion2017, appServiceApiVersion, appServiceApiVersion2025]

/** The query parameters a 2019-08-01 request may carry; the fast lane serves a query of these only. */
export const appServiceQueryParameters = [
  'api-version',
  'resource',
  'client_id',
  'principal_id',
  'object_id',
  'mi_res_id',
] as const

/** The user-assigned selector of an App Service request in `version`'s spelling. */
export function appServiceSelector(
  field: (name: string) => string | undefined,
  version: string,
): CompatSelector {
  return {
    clientId:
      version === appServiceApiVersion2017
        ? oneOf(field('clientid'), field('client_id'))
        : field('client_id'),
    objectId: oneOf(field('principal_id'), field('object_id')),
    resourceId: field('mi_res_id'),
  }
}
const path = appServiceTokenPath

/**
 * App Service's answer for `served`, asked for as `resource` (nothing in it depends on the time).
 * `expires_on` is epoch seconds in a string in every version: App Service 2017-09-01 wrote a date
 * ("09/14/2017 00:00:00 PM +00:00"), but each of its clients parses an integer string first (adal
 * `parseExpiresOn`, azure-identity `_parse_expires_on`, for Azure ML's answer) and 2019-08-01's
 * clients read nothing else.
 */
export function appServiceTokenJson(served: ServedToken, resource: string): AppServiceTokenJson {
  const clientId = compatClientId(served)
  return {
    access_token: served.token.accessToken,
    expires_on: String(Math.floor(served.token.expiresOn / 1000)),
    resource,
    token_type: 'Bearer',
    ...(clientId === undefined ? {} : { client_id: clientId }),
  }
}

/**
 * GET /msi/token: App Service's managed identity endpoint, for unmodified SDKs configured with
 * `IDENTITY_ENDPOINT=http://127.0.0.1:PORT/msi/token` and `IDENTITY_HEADER=<secret>`, or with
 * `MSI_ENDPOINT` + `MSI_SECRET` (contract §3).
 * msal-node `ManagedIdentitySources/AppService.mjs` (used by @azure/identity too) sends
 * `api-version=2019-08-01`, `resource`, `client_id` / `object_id` / `mi_res_id`, and the secret in
 * `X-IDENTITY-HEADER` — no `Metadata` header, so the secret alone authenticates the caller, and
 * without a configured secret the route does not exist. App Service also documents `principal_id`
 * for the object id. The 2017-09-01 dialect carries the same secret in header `secret`.
 */
export function appServiceCompatRoutes(deps: AppServiceCompatRoutesDeps): Hono {
  const app = new Hono()

  const appServiceCaller: MiddlewareHandler = async function appServiceCaller(c, next) {
    // Read once: the secret checked below must be the one whose presence opened the route.
    const secret = deps.secret()
    if (secret === undefined) throw new SidecarError('not_found', 'No such route')
    const dialect2017 = c.req.query('api-version') === appServiceApiVersion2017
    const guard = callerGuard({
      requireMetadataHeader: false,
      // The 2017 dialect's header is checked below, after Host and forwarding headers.
      secret: () => (dialect2017 ? undefined : secret),
      hostAllowed: deps.hostAllowed,
      authorizeCaller: async (c) => {
        if (dialect2017 && !secretMatches(c.req.header('secret'), secret))
          throw new SidecarError('unauthorized', 'Missing or wrong secret header')
        await deps.access.authorizeConnection(c)
      },
    })
    return guard(c, next)
  }
  app.use(path, appServiceCaller)
  app.use(`${path}/`, appServiceCaller)

  const token = async (c: Context) => {
    const version = singleQuery(c, 'api-version')
    if (!version) throw new SidecarError('invalid_request', 'Required query variable api-version is missing')
    if (!apiVersions.includes(version)) {
      throw new SidecarError(
        'invalid_request',
        `api-version ${version.slice(0, 40)} is not supported; use ${apiVersions.join(', ')}`,
      )
    }
    const resource = singleQuery(c, 'resource')
    if (!resource) throw new SidecarError('invalid_request', 'Required query variable resource is missing')
    const identity = compatIdentity(
      deps.tokens,
      deps.access.compatIdentity(c),
      appServiceSelector((name) => singleQuery(c, name), version),
    )
    deps.access.authorize(c, identity.name)
    const cae = caeFromQuery(c, { claims: false, xmsCc: true })
    const served = await deps.tokens.getToken(identity, normaliseScope({ resource }), cae)
    return c.json(appServiceTokenJson(served, resource))
  }
  app.get(path, token)
  // As on the IMDS route: msal-node may canonicalise an endpoint to end in "/"; msrestazure
  // appends "/?resource=…" to MSI_ENDPOINT.
  app.get(`${path}/`, token)

  return app
}
