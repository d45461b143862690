import { SidecarError } from '../core/errors.ts'
import type { Identity } from '../identities/identity.ts'
import { normaliseScope } from '../tokens/scope.ts'
import type { Scope } from '../model/scope.ts'
import type { ServedToken } from '../identities/identity.ts'
import type { TokenService } from '../tokens/token-service.ts'
import type { TokenRouteGuard } from './caller-checks.ts'
import type { ErrorDialect } from './error-response.ts'
import { expiresIn, tokenResponseJson } from './wire/responses.ts'
import {
  appServiceApiVersions,
  appServiceQueryParameters,
  appServiceSelector,
  appServiceTokenJson,
  appServiceTokenPath,
} from './routes/app-service-compat.ts'
import { compatIdentity, compatNotBefore, type CompatSelector } from './routes/compat-identity.ts'
import {
  imdsExpiresIn,
  imdsQueryParameters,
  imdsSelector,
  imdsTokenJson,
  imdsTokenPath,
} from './routes/imds-compat.ts'

/** One parameter of a request by name: a single query value, or a form field. */
export type Field = (name: string) => string | undefined

/** What a token request asks for, as its route reads it from the parameters (nothing resolved yet). */
export interface TokenAsk {
  /** `/token`'s `identity`. */
  identity?: string | undefined
  /** The compat routes' user-assigned selector (client_id, object_id, …). */
  selector?: CompatSelector
  /** The compat routes' `resource` (echoed in their answers). */
  resource?: string
  /** The compat routes' `api-version` (App Service checks its caller by it). */
  apiVersion?: string | undefined
  /** Whether the parameters name the identity; else the caller's (callers.allow) or the default. */
  selected: boolean
}

/**
 * One token route, declared once: both front doors are built from it — the hono app
 * (`token-route-app.ts`: every request) and the fast lane (`fast-lane.ts`: cache hits of a plain
 * query). The steps run in this order on both: caller check (`guard`), `read`, `identity`, the
 * caller's right to it (callers.allow), `scope`, CAE parameters (hono only: the lane never takes
 * them), the token, `answer`. A parameter is read by the first step that needs it, so a caller
 * refused the identity learns nothing about the rest of its query.
 */
export interface TokenRoute {
  /** The route's name in the fast lane's bookkeeping. */
  name: 'token' | 'imds' | 'appService'
  /** Every path it is served at (hono's route paths and metric labels). */
  paths: readonly string[]
  /** Also served at `/` + each path (`//metadata/…`: an endpoint ending in `/` joined with one, `compat-path.ts`). */
  doubleSlash: boolean
  /** Which caller check it runs (`caller-checks.ts`). */
  guard: TokenRouteGuard
  /** How its errors are worded (`error-response.ts`). */
  dialect: ErrorDialect
  /** The query parameters of a plain cache lookup: the fast lane takes a query of these names only. */
  parameters: ReadonlySet<string>
  /** The CAE parameters it accepts (`wire/cae-query.ts`). */
  cae: { claims: boolean; xmsCc: boolean }
  /** Also answered to a POST with a form body of at most `bodyLimit` bytes (Cloud Shell). */
  form?: { bodyLimit: number }
  /** Reads and checks what selects the identity; throws the 400 the caller gets. */
  read(field: Field, source: 'query' | 'form'): TokenAsk
  /** The identity asked for; `fallback` is the caller's first callers.allow identity. */
  identity(tokens: TokenService, ask: TokenAsk, fallback: () => string | undefined): Identity
  /** The audience asked for (read once the caller may have the identity). */
  scope(ask: TokenAsk, field: Field): Scope
  /** The 200 body. */
  answer(served: ServedToken, ask: TokenAsk, nowMs: number, exposePrivateKey: boolean): object
  /**
   * The fields of `answer` that change with the time alone, as JSON text at `nowMs`: the fast lane
   * serialises the answer once per token and prints only these per request.
   */
  clocked(served: ServedToken): Map<string, (nowMs: number) => string>
}

/** A path and the same with a trailing slash (the compat clients send both). */
function atBothSlashes(path: string): string[] {
  return [path, `${path}/`]
}

/** GET /token: the sidecar's own token route (contract §3). */
export const nativeTokenRoute: TokenRoute = {
  name: 'token',
  paths: ['/token'],
  doubleSlash: false,
  guard: 'token',
  dialect: 'oauth',
  parameters: new Set(['resource', 'scope', 'identity']),
  cae: { claims: true, xmsCc: false },
  read: (field) => ({ identity: field('identity'), selected: true }),
  identity: (tokens, ask) => tokens.identity(ask.identity),
  scope: (_ask, field) => normaliseScope({ resource: field('resource'), scope: field('scope') }),
  answer: (served, _ask, nowMs, exposePrivateKey) => tokenResponseJson(served, nowMs, exposePrivateKey),
  clocked: (served) =>
    new Map([['expires_in', (nowMs: number) => String(expiresIn(served.token.expiresOn, nowMs))]]),
}

function missing(name: string, source: 'query' | 'form'): SidecarError {
  return new SidecarError(
    'invalid_request',
    source === 'form'
      ? `Required form field ${name} is missing`
      : `Required query variable ${name} is missing`,
  )
}

function compatAsk(resource: string, selector: CompatSelector, apiVersion: string | undefined): TokenAsk {
  const selected = Object.values(selector).some((value) => value !== undefined)
  return { resource, selector, apiVersion, selected }
}

const compatSteps = {
  identity: (tokens: TokenService, ask: TokenAsk, fallback: () => string | undefined) =>
    compatIdentity(tokens, fallback(), ask.selector ?? {}),
  scope: (ask: TokenAsk) => normaliseScope({ resource: ask.resource }),
}

/**
 * GET (and the Cloud Shell POST) /metadata/identity/oauth2/token: Azure IMDS v1 (`imds-compat.ts`
 * says what each client sends and reads).
 */
export const imdsTokenRoute: TokenRoute = {
  name: 'imds',
  // msal-node canonicalises the endpoint (msal-common `UrlString.canonicalizeUri`: lower case and a
  // trailing "/"), so SDKs built on it ask for `…/oauth2/token/`; IMDS answers both.
  paths: atBothSlashes(imdsTokenPath),
  doubleSlash: true,
  guard: 'imds',
  dialect: 'compat',
  parameters: new Set(imdsQueryParameters),
  // msal-node sends xms_cc whenever capabilities are configured, token_sha256_to_refresh (so
  // far) only to Service Fabric; xms_cc alone cannot tell a claims request from a first one, so
  // only a matching hash forces a refresh (upstream-protocol.md §7).
  cae: { claims: false, xmsCc: true },
  // The Cloud Shell form names a resource and a selector: 4 KiB is plenty (contract §3).
  form: { bodyLimit: 4096 },
  read(field, source) {
    // The Cloud Shell dialect (a form) carries no api-version; the GET always does.
    const apiVersion = field('api-version')
    if (source === 'query' && !apiVersion) throw missing('api-version', source)
    const resource = field('resource')
    if (!resource) throw missing('resource', source)
    return compatAsk(resource, imdsSelector(field), apiVersion)
  },
  ...compatSteps,
  answer: (served, ask, nowMs) => imdsTokenJson(served, ask.resource ?? '', nowMs),
  clocked(served) {
    const expiresInJson = (nowMs: number) => JSON.stringify(imdsExpiresIn(served.token.expiresOn, nowMs))
    const fields = new Map([
      ['expires_in', expiresInJson],
      ['ext_expires_in', expiresInJson],
    ])
    // not_before is the token's nbf when it has one (fixed), else "now". Decided by whether there
    // is an nbf, not by comparing values: an nbf in this very second is still fixed.
    if (compatNotBefore(served) === undefined)
      fields.set('not_before', (nowMs) => `"${Math.floor(nowMs / 1000)}"`)
    return fields
  },
}

/** GET /msi/token: App Service's managed identity endpoint, every api-version (`app-service-compat.ts`). */
export const appServiceTokenRoute: TokenRoute = {
  name: 'appService',
  // As on the IMDS route: msal-node may canonicalise an endpoint to end in "/"; msrestazure
  // appends "/?resource=…" to MSI_ENDPOINT.
  paths: atBothSlashes(appServiceTokenPath),
  doubleSlash: true,
  guard: 'app-service',
  dialect: 'compat',
  parameters: new Set(appServiceQueryParameters),
  cae: { claims: false, xmsCc: true },
  read(field) {
    const version = field('api-version')
    if (!version) throw missing('api-version', 'query')
    if (!appServiceApiVersions.includes(version)) {
      throw new SidecarError(
        'invalid_request',
        `api-version ${version.slice(0, 40)} is not supported; use ${appServiceApiVersions.join(', ')}`,
      )
    }
    const resource = field('resource')
    if (!resource) throw missing('resource', 'query')
    return compatAsk(resource, appServiceSelector(field, version), version)
  },
  ...compatSteps,
  answer: (served, ask) => appServiceTokenJson(served, ask.resource ?? ''),
  clocked: () => new Map(),
}

/** Every token route, in the order hono registers them. */
export const tokenRoutes: readonly TokenRoute[] = [nativeTokenRoute, imdsTokenRoute, appServiceTokenRoute]
