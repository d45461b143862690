import { Hono, type Context, type MiddlewareHandler } from 'hono'
import type { DownstreamApiConfig } from '../../config/types.ts'
import { SidecarError } from '../../core/errors.ts'
import { parseClaimsChallenge, type CaeRequest } from '../../model/claims.ts'
import { normaliseScope, type NormalisedScope } from '../../tokens/scope.ts'
import type { TokenService } from '../../tokens/token-service.ts'
import { bindingCertificateJson, type BindingCertificateJson } from '../wire/responses.ts'
import type { CallerAccess } from '../callers/caller-access.ts'
import { apiScope, type DownstreamProxy } from '../../downstream/proxy.ts'
import { downstreamTarget } from '../../downstream/target.ts'

export interface AgentIdCompatRoutesDeps {
  tokens: TokenService
  /** Proxy mode; the routes answer "not able to resolve" for every api when none is configured. */
  proxy: DownstreamProxy | undefined
  /** Host, forwarding headers and secret checks, without the Metadata demand. */
  guard: MiddlewareHandler
  exposePrivateKey: boolean
  /** `callers.allow`: the api's identity must be one the caller may use. */
  access: CallerAccess
}

/** `GET /AuthorizationHeaderUnauthenticated/{api}`'s answer. */
export interface AuthorizationHeaderJson {
  authorizationHeader: string
  /** Only for mtls_pop: the certificate the token is bound to (present it in the TLS handshake). */
  bindingCertificate?: BindingCertificateJson
}

/** `/DownstreamApiUnauthenticated/{api}`'s answer: the resource's answer, wrapped. */
export interface DownstreamApiJson {
  statusCode: number
  headers: Record<string, string[]>
  content: string | null
}

/** The `optionsOverride.*` keys these routes honour (case-insensitive, as ASP.NET binds them). */
const supportedOverrides = [
  'scopes',
  'requestapptoken',
  'acquiretokenoptions.claims',
  'relativepath',
  'httpmethod',
  'contenttype',
  'acceptheader',
] as const
type Override = (typeof supportedOverrides)[number]

const httpMethods = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'])

/**
 * The app-token routes of the Microsoft Entra SDK for AgentID container
 * (microsoft-identity-web `src/Microsoft.Identity.Web.Sidecar/Endpoints/`), so an application
 * written against it switches by changing its base URL (contract §3). Served only with
 * `compat.agentIdSidecar: true`, over `downstreamApis`.
 *
 * Like that container they do not demand `Metadata: true` (its clients never send it), so a
 * server-side request forgery in a caller could reach them; every other caller check applies.
 * Of its `optionsOverride.*` query parameters these are honoured: `Scopes` (one `…/.default`
 * scope: these are app tokens), `RequestAppToken` (must not be false), `AcquireTokenOptions.Claims`
 * (a CAE claims challenge), `RelativePath`, `HttpMethod`, `ContentType`, `AcceptHeader`. Others —
 * `BaseUrl` above all (the caller never chooses the host), `Tenant`, agent identities
 * (`AgentIdentity`, `AgentUsername`, `AgentUserId`), extra headers or query parameters — are
 * refused with 400 naming them, rather than silently ignored.
 */
export function agentIdCompatRoutes(deps: AgentIdCompatRoutesDeps): Hono {
  const app = new Hono()
  app.use('/AuthorizationHeaderUnauthenticated/*', deps.guard)
  app.use('/DownstreamApiUnauthenticated/*', deps.guard)

  app.get('/AuthorizationHeaderUnauthenticated/:api', async (c) => {
    const { api } = resolveApi(deps, c.req.param('api'))
    deps.access.authorize(c, api.identity)
    const overrides = readOverrides(c)
    const cae: CaeRequest = {}
    const claims = overrides.get('acquiretokenoptions.claims')
    if (claims !== undefined) cae.claims = parseClaimsChallenge(claims)
    const served = await deps.tokens.getToken(
      deps.tokens.identity(api.identity),
      scopeOf(api, overrides),
      cae,
    )
    const { token } = served
    const body: AuthorizationHeaderJson = { authorizationHeader: `${token.tokenType} ${token.accessToken}` }
    if (token.tokenType === 'mtls_pop') {
      if (!token.binding)
        throw new SidecarError('internal_error', 'mtls_pop token without its binding certificate')
      body.bindingCertificate = bindingCertificateJson(token.binding, deps.exposePrivateKey)
    }
    return c.json(body)
  })

  const downstream = async (c: Context) => {
    const { api, proxy } = resolveApi(deps, c.req.param('api') ?? '')
    deps.access.authorize(c, api.identity)
    const overrides = readOverrides(c)
    if (overrides.has('acquiretokenoptions.claims')) {
      throw new SidecarError(
        'invalid_request',
        'optionsOverride.AcquireTokenOptions.Claims is honoured on /AuthorizationHeaderUnauthenticated only; the proxied call already retries once with a fresh token on 401',
      )
    }
    const scopes = overrides.getAll('scopes')
    if (scopes.length > 0 && scopeOf(api, overrides).scope !== apiScope(api).scope) {
      throw new SidecarError(
        'invalid_request',
        `optionsOverride.Scopes must name the scope configured for "${api.name}" on this route`,
      )
    }
    const method = (overrides.get('httpmethod') ?? 'GET').toUpperCase()
    if (!httpMethods.has(method))
      throw new SidecarError('invalid_request', `optionsOverride.HttpMethod "${method}" is not supported`)
    const relative = overrides.get('relativepath') ?? ''
    const queryAt = relative.indexOf('?')
    const path = queryAt === -1 ? relative : relative.slice(0, queryAt)
    const target = downstreamTarget(
      api.baseUrl,
      path === '' || path.startsWith('/') ? path : `/${path}`,
      queryAt === -1 ? undefined : relative.slice(queryAt + 1),
    )
    const headers = new Headers()
    const contentType = overrides.get('contenttype') ?? c.req.header('content-type')
    const accept = overrides.get('acceptheader') ?? 'application/json'
    headers.set('accept', accept)
    // As the container does: the caller's body goes downstream only when it says what it is.
    const withBody = contentType !== undefined && method !== 'GET' && method !== 'HEAD'
    if (withBody) headers.set('content-type', contentType)
    const outgoing = new Request(target, {
      method,
      headers,
      ...(withBody ? { body: await c.req.arrayBuffer() } : {}),
      signal: c.req.raw.signal,
    })
    const res = await proxy.forward(api, target, outgoing)
    const content = await res.text()
    const body: DownstreamApiJson = {
      statusCode: res.status,
      headers: groupHeaders(res.headers),
      content: content === '' ? null : content,
    }
    return c.json(body)
  }
  app.on(
    [...httpMethods].filter((m) => m !== 'HEAD'),
    '/DownstreamApiUnauthenticated/:api',
    downstream,
  )
  return app
}

function resolveApi(
  deps: AgentIdCompatRoutesDeps,
  name: string,
): { api: DownstreamApiConfig; proxy: DownstreamProxy } {
  // The container answers 400 "Not able to resolve" for an api it does not know; so do we.
  try {
    if (deps.proxy) return { api: deps.proxy.api(name), proxy: deps.proxy }
  } catch {
    // fall through
  }
  throw new SidecarError('invalid_request', `Not able to resolve '${name}' (no such downstreamApis entry)`)
}

/** `optionsOverride.*` query parameters, keys lower-cased; unknown ones and agent identities refused. */
function readOverrides(c: Context): {
  get(key: Override): string | undefined
  getAll(key: Override): string[]
  has(key: Override): boolean
} {
  const query = new URL(c.req.url).searchParams
  const values = new Map<string, string[]>()
  const refused: string[] = []
  for (const [key, value] of query) {
    const lower = key.toLowerCase()
    if (!lower.startsWith('optionsoverride.')) {
      refused.push(key)
      continue
    }
    const name = lower.slice('optionsoverride.'.length)
    if (!(supportedOverrides as readonly string[]).includes(name)) {
      refused.push(key)
      continue
    }
    values.set(name, [...(values.get(name) ?? []), value])
  }
  if (refused.length > 0) {
    throw new SidecarError(
      'invalid_request',
      `Not supported by credential-sidecar: ${refused.join(', ')} (supported: ${supportedOverrides.map((o) => `optionsOverride.${o}`).join(', ')}; agent identities and per-request tenants or hosts are not)`,
    )
  }
  const requestAppToken = values.get('requestapptoken')?.at(-1)
  if (requestAppToken !== undefined && requestAppToken.toLowerCase() !== 'true') {
    throw new SidecarError(
      'invalid_request',
      'These routes serve app tokens only (optionsOverride.RequestAppToken must be true)',
    )
  }
  return {
    get: (key) => values.get(key)?.at(-1),
    getAll: (key) => values.get(key) ?? [],
    has: (key) => values.has(key),
  }
}

/** The api's configured scope, or the one `optionsOverride.Scopes` names (a single `…/.default`). */
function scopeOf(api: DownstreamApiConfig, overrides: { getAll(key: 'scopes'): string[] }): NormalisedScope {
  const scopes = overrides.getAll('scopes').filter((s) => s.trim() !== '')
  if (scopes.length === 0) return apiScope(api)
  if (scopes.length > 1) {
    throw new SidecarError(
      'invalid_request',
      'optionsOverride.Scopes: app tokens take a single "<resource>/.default" scope',
    )
  }
  return normaliseScope({ scope: scopes[0] })
}

function groupHeaders(headers: Headers): Record<string, string[]> {
  const grouped: Record<string, string[]> = {}
  for (const [name, value] of headers) {
    grouped[name] = [...(grouped[name] ?? []), value]
  }
  return grouped
}
