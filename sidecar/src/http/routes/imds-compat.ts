import { Hono, type Context, type MiddlewareHandler } from 'hono'
import type { Clock } from '../../core/clock.ts'
import { SidecarError } from '../../core/errors.ts'
import { normaliseScope } from '../../tokens/scope.ts'
import type { ServedToken, TokenService } from '../../tokens/token-service.ts'
import { caeFromQuery } from '../wire/cae-query.ts'
import { readFormBody } from '../wire/form-body.ts'
import { singleQuery } from '../wire/responses.ts'
import type { CallerAccess } from '../callers/caller-access.ts'
import {
  compatClientId,
  compatIdentity,
  compatNotBefore,
  oneOf,
  type CompatSelector,
} from './compat-identity.ts'

export interface ImdsCompatRoutesDeps {
  tokens: TokenService
  clock: Clock
  /** The token-route caller guard (Metadata: true, Host, X-Forwarded-For, secret). */
  guard: MiddlewareHandler
  /** `callers.allow`: with no selector the caller's first allowed identity is served. */
  access: CallerAccess
}

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

export const imdsTokenPath = '/metadata/identity/oauth2/token'
const path = imdsTokenPath
/** The Cloud Shell form names a resource and a selector: 4 KiB is plenty (contract §3). */
const cloudShellBodyLimit = 4096

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

/**
 * GET /metadata/identity/oauth2/token: Azure IMDS v1 as unmodified SDKs call it with
 * `AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:PORT` (contract §3). What they send and read:
 * - msal-node `ManagedIdentitySources/Imds.mjs` (which @azure/identity's ManagedIdentityCredential
 *   delegates to): `api-version=2018-02-01`, `resource`, one of `client_id` / `object_id` /
 *   `msi_res_id`, header `Metadata: true`. `BaseManagedIdentitySource.mjs` reads `access_token`,
 *   `token_type`, `resource`, and `expires_on` (epoch seconds, a string is fine: it subtracts);
 *   errors from `error` + `error_description` (or `message`).
 * - @azure/identity `imdsMsi.js` may first probe with no query and no Metadata header, counting
 *   any HTTP answer as "IMDS is there": the guard's 400 "Required metadata header not specified"
 *   is that answer, as on a real VM (a 403 mentioning "unreachable" would mean "not there").
 */
export function imdsCompatRoutes(deps: ImdsCompatRoutesDeps): Hono {
  const app = new Hono()
  app.use(path, deps.guard)
  app.use(`${path}/`, deps.guard)

  const answer = async (c: Context, field: (name: string) => string | undefined, form: boolean) => {
    // The Cloud Shell dialect (a form) carries no api-version; the GET always does.
    if (!form && !field('api-version')) {
      throw new SidecarError('invalid_request', 'Required query variable api-version is missing')
    }
    const resource = field('resource')
    if (!resource) {
      throw new SidecarError(
        'invalid_request',
        form ? 'Required form field resource is missing' : 'Required query variable resource is missing',
      )
    }
    const identity = compatIdentity(deps.tokens, deps.access.compatIdentity(c), imdsSelector(field))
    deps.access.authorize(c, identity.name)
    // msal-node sends xms_cc whenever capabilities are configured, token_sha256_to_refresh (so
    // far) only to Service Fabric; xms_cc alone cannot tell a claims request from a first one, so
    // only a matching hash forces a refresh (upstream-protocol.md §7).
    const cae = caeFromQuery(c, { claims: false, xmsCc: true })
    const served = await deps.tokens.getToken(identity, normaliseScope({ resource }), cae)
    return c.json(imdsTokenJson(served, resource, deps.clock.now()))
  }
  const token = (c: Context) => answer(c, (name) => singleQuery(c, name), false)
  app.get(path, token)
  // msal-node canonicalises the endpoint (msal-common `UrlString.canonicalizeUri`: lower case and a
  // trailing "/"), so SDKs built on it ask for `…/oauth2/token/`; IMDS answers both.
  app.get(`${path}/`, token)

  /**
   * The Cloud Shell dialect, spoken when only `MSI_ENDPOINT` is set: `POST` with a form body
   * (`resource`, optional `client_id` / `object_id` / `msi_res_id`) and `Metadata: true` —
   * msrestazure `get_msi_token` (the Azure CLI), azure-identity `CloudShellCredential`, Go adal
   * (`msiTypeCloudShell`, a chunked body). The answer is the GET's.
   */
  const cloudShell = async (c: Context) => {
    const form = await readFormBody(c.req.raw, cloudShellBodyLimit)
    return answer(c, (name) => form.get(name), true)
  }
  app.post(path, cloudShell)
  app.post(`${path}/`, cloudShell)

  return app
}
