import type { ServedToken } from '../../identities/identity.ts'
import { compatClientId, compatNotBefore, oneOf, type CompatSelector } from './compat-identity.ts'

/** IMDS v1's token answer: every number is a string. */
export interface ImdsTokenJson {
  access_token: string
  client_id?: string
  expires_in: string
  expires_on: string
  ext_expires_in: string
  not_before: string
  resource: string
  token_type: 'Bearer'
}

/**
 * Azure IMDS v1's token route, as unmodified SDKs call it with
 * `AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:PORT` (contract §3); declared with its steps in
 * `http/token-routes.ts`. What they send and read:
 * - msal-node `ManagedIdentitySources/Imds.mjs` (which @azure/identity's ManagedIdentityCredential
 *   delegates to): `api-version=2018-02-01`, `resource`, one of `client_id` / `object_id` /
 *   `msi_res_id`, header `Metadata: true`. `BaseManagedIdentitySource.mjs` reads `access_token`,
 *   `token_type`, `resource`, and `expires_on` (epoch seconds, a string is fine: it subtracts);
 *   errors from `error` + `error_description` (or `message`).
 * - @azure/identity `imdsMsi.js` may first probe with no query and no Metadata header, counting
 *   any HTTP answer as "IMDS is there": the guard's 400 "Required metadata header not specified"
 *   is that answer, as on a real VM (a 403 mentioning "unreachable" would mean "not there").
 * - The Cloud Shell dialect, spoken when only `MSI_ENDPOINT` is set: `POST` with a form body
 *   (`resource`, optional `client_id` / `object_id` / `msi_res_id`) and `Metadata: true` —
 *   msrestazure `get_msi_token` (the Azure CLI), azure-identity `CloudShellCredential`, Go adal
 *   (`msiTypeCloudShell`, a chunked body). The answer is the GET's.
 */
export const imdsTokenPath = '/metadata/identity/oauth2/token'

/** The query parameters the IMDS route's GET reads; the fast lane serves a query of these only. */
export const imdsQueryParameters = [
  'api-version',
  'resource',
  'client_id',
  'object_id',
  'msi_res_id',
  'mi_res_id',
] as const

/** The user-assigned selector of an IMDS request (query or Cloud Shell form): one of four names. */
export function imdsSelector(field: (name: string) => string | undefined): CompatSelector {
  return {
    clientId: field('client_id'),
    objectId: field('object_id'),
    // IMDS v1 spells it msi_res_id; newer clients (and IMDS v2) mi_res_id.
    resourceId: oneOf(field('msi_res_id'), field('mi_res_id')),
  }
}

/** IMDS's `expires_in` (and `ext_expires_in`): whole seconds from now to `expires_on`, a string. */
export function imdsExpiresIn(expiresOnMs: number, nowMs: number): string {
  return String(Math.max(0, Math.floor(expiresOnMs / 1000) - Math.floor(nowMs / 1000)))
}

/** The IMDS answer for `served`, asked for as `resource`, at `nowMs`. */
export function imdsTokenJson(served: ServedToken, resource: string, nowMs: number): ImdsTokenJson {
  const nowSeconds = Math.floor(nowMs / 1000)
  const expiresOn = Math.floor(served.token.expiresOn / 1000)
  const expiresIn = imdsExpiresIn(served.token.expiresOn, nowMs)
  const clientId = compatClientId(served)
  return {
    access_token: served.token.accessToken,
    ...(clientId === undefined ? {} : { client_id: clientId }),
    expires_in: expiresIn,
    expires_on: String(expiresOn),
    ext_expires_in: expiresIn,
    not_before: String(compatNotBefore(served) ?? nowSeconds),
    // IMDS echoes the resource as asked (msal-node keys its cache on it).
    resource,
    token_type: 'Bearer',
  }
}
