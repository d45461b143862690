import type { ServedToken } from '../../identities/identity.ts'
import { compatClientId, oneOf, type CompatSelector } from './compat-identity.ts'

/** App Service's managed identity answer (api-version 2019-08-01): `expires_on` is a string. */
export interface AppServiceTokenJson {
  access_token: string
  expires_on: string
  resource: string
  token_type: 'Bearer'
  client_id?: string
}

/**
 * App Service's managed identity endpoint, for unmodified SDKs configured with
 * `IDENTITY_ENDPOINT=http://127.0.0.1:PORT/msi/token` and `IDENTITY_HEADER=<secret>`, or with
 * `MSI_ENDPOINT` + `MSI_SECRET` (contract §3); declared with its steps in `http/token-routes.ts`.
 * msal-node `ManagedIdentitySources/AppService.mjs` (used by @azure/identity too) sends
 * `api-version=2019-08-01`, `resource`, `client_id` / `object_id` / `mi_res_id`, and the secret in
 * `X-IDENTITY-HEADER` — no `Metadata` header, so the secret alone authenticates the caller, and
 * without a configured secret the route does not exist. App Service also documents `principal_id`
 * for the object id. The 2017-09-01 dialect carries the same secret in header `secret`
 * (`http/caller-checks.ts`).
 */
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
/** Every api-version the route speaks. */
export const appServiceApiVersions = [
  appServiceApiVersion2017,
  appServiceApiVersion,
  appServiceApiVersion2025,
]

/** The query parameters of a plain request (every version): the fast lane serves a query of these only. */
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
