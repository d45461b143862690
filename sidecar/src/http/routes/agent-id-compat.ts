import { createHash } from 'node:crypto'
import { Hono, type Context, type MiddlewareHandler } from 'hono'
import type { DownstreamApiConfig } from '../../config/types.ts'
import { SidecarError } from '../../core/errors.ts'
import type { Logger } from '../../core/log.ts'
import type { Identity } from '../../identities/identity.ts'
import type { CaeRequest } from '../../model/claims.ts'
import { parseClaimsChallenge } from '../wire/cae-query.ts'
import { normaliseScope } from '../../tokens/scope.ts'
import type { Scope } from '../../model/scope.ts'
import type { TokenService } from '../../tokens/token-service.ts'
import { bindingCertificateJson, type BindingCertificateJson } from '../wire/responses.ts'
import type { CallerAccess } from '../callers/caller-access.ts'
import { apiScope, type DownstreamProxy } from '../../downstream/proxy.ts'
import { downstreamTarget } from '../../downstream/target.ts'
import { readBoundedBody } from '../../core/bounded-body.ts'

export interface AgentIdCompatRoutesDeps {
  tokens: TokenService
  logger: Logger
  /** Proxy mode; the routes answer "not able to resolve" for every api when none is configured. */
  proxy: DownstreamProxy | undefined
  /** Host, forwarding headers and callers.allow checks, without the Metadata or secret demand. */
  guard: MiddlewareHandler
  exposePrivateKey: boolean
  /** `callers.allow`: the api's identity must be one the caller may use. */
  access: CallerAccess
}

/** `/AuthorizationHeaderUnauthenticated/{api}`'s answer. */
export interface AuthorizationHeaderJson {
  authorizationHeader: string
  /** Only for mtls_pop: the certificate the token is bound to (present it in the TLS handshake). */
  bindingCertificate?: BindingCertificateJson
}

/** `/DownstreamApiUnauthenticated/{api}`'s answer: the resource's answer, wrapped. */
export interface DownstreamApiJson {
  statusCode: number
  /** The content headers only, under their canonical names (.NET `HttpContent.Headers`). */
  headers: Record<string, string[]>
  /** Absent (null) when the resource's body is empty. */
  content: string | null
}

/** The `optionsOverride.*` keys these routes honour, lower-cased (ASP.NET binds them case-insensitively). */
const supportedOverrides = [
  'scopes',
  'requestapptoken',
  'baseurl',
  'acquiretokenoptions.claims',
  'acquiretokenoptions.forcerefresh',
  'acquiretokenoptions.correlationid',
  'acquiretokenoptions.managedidentity.userassignedclientid',
  'relativepath',
  'httpmethod',
  'contenttype',
  'acceptheader',
] as const
type Override = (typeof supportedOverrides)[number]
/**
 * What the container would honour and this sidecar cannot, lower-cased: refused (400) rather than
 * ignored, since ignoring them would answer with another token than the one asked for (an agent
 * identity's, another tenant's, a user's, a PoP token for the caller's key). Any other key is
 * ignored, as ASP.NET's binding ignores a query parameter it has no property for.
 */
const refusedParameters = new Set(['agentidentity', 'agentusername', 'agentuserid'])
const refusedOverrides = new Set([
  'acquiretokenoptions.tenant',
  'acquiretokenoptions.fmipath',
  'acquiretokenoptions.poppublickey',
  'acquiretokenoptions.popclaim',
  'acquiretokenoptions.longrunningwebapisessionkey',
  'acquiretokenoptions.userflow',
  'acquiretokenoptions.authenticationoptionsname',
  'protocolscheme',
])
const extraHeaderPrefix = 'extraheaderparameters.'
const extraQueryPrefix = 'extraqueryparameters.'

const httpMethods = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'])

/**
 * Headers a caller may not add through `ExtraHeaderParameters`: the sidecar's own credential and
 * the resource's host, the caller's cookies, proxy credentials, and hop-by-hop / framing headers
 * (RFC 9110 §7.6.1), which would let a caller reshape the downstream request.
 */
const refusedExtraHeaders = new Set([
  'authorization',
  'host',
  'cookie',
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'expect',
  'http2-settings',
  // The proxy never forwards these (downstream/headers.ts): refused rather than silently dropped.
  'forwarded',
  'x-real-ip',
  'metadata',
  'x-identity-header',
])

/** RFC 9110 token characters: a header name. */
const headerName = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/**
 * .NET's content headers (`System.Net.Http.Headers.HttpContentHeaders`), keyed lower-case, with the
 * canonical name the container's `DownstreamApiResult.headers` carries.
 */
const contentHeaderNames = new Map(
  [
    'Allow',
    'Content-Disposition',
    'Content-Encoding',
    'Content-Language',
    'Content-Length',
    'Content-Location',
    'Content-MD5',
    'Content-Range',
    'Content-Type',
    'Expires',
    'Last-Modified',
  ].map((name) => [name.toLowerCase(), name]),
)

/**
 * The app-token routes of the Microsoft Entra SDK for AgentID container
 * (microsoft-identity-web `src/Microsoft.Identity.Web.Sidecar/Endpoints/`), so an application
 * written against it switches by changing its base URL (contract §3). Served only with
 * `compat.agentIdSidecar: true`, over `downstreamApis`.
 *
 * Like that container they demand neither `Metadata: true` nor a caller secret (its clients send
 * neither), so a server-side request forgery in a caller could reach them; Host, forwarding headers
 * and `callers.allow` still apply. Of its `optionsOverride.*` query parameters (bound as the
 * container's `BindableDownstreamApiOptions` binds them: case-insensitive, last value wins, empty
 * extra headers or query parameters skipped) these are honoured: `Scopes` (one `…/.default` scope:
 * these are app tokens), `RequestAppToken` (must not be false), `AcquireTokenOptions.Claims` (a
 * CAE claims challenge), `.ForceRefresh`, `.CorrelationId` (logged), `.ManagedIdentity.UserAssignedClientId`,
 * `RelativePath`, `HttpMethod`, `ContentType`, `AcceptHeader`, `ExtraHeaderParameters.*`,
 * `ExtraQueryParameters.*`; `BaseUrl` is ignored (the caller never chooses the host). `Tenant`,
 * `FmiPath`, `PopPublicKey`, long-running OBO and agent identities (`AgentIdentity`,
 * `AgentUsername`, `AgentUserId`) are refused with 400 naming them, rather than silently ignored.
 */
export function agentIdCompatRoutes(deps: AgentIdCompatRoutesDeps): Hono {
  const app = new Hono()
  app.use('/AuthorizationHeaderUnauthenticated/*', deps.guard)
  app.use('/DownstreamApiUnauthenticated/*', deps.guard)

  const authorizationHeader = async (c: Context) => {
    const overrides = readOverrides(c, deps.logger)
    const { api, identity } = resolve(deps, c.req.param('api') ?? '', overrides)
    deps.access.authorize(c, identity.name)
    const scope = scopeOf(api, overrides)
    const cae: CaeRequest = {}
    const claims = overrides.get('acquiretokenoptions.claims')
    if (claims !== undefined) cae.claims = parseClaimsChallenge(claims)
    if (overrides.forceRefresh) forceRefresh(identity, scope, cae)
    const served = await deps.tokens.getToken(identity, scope, cae)
    const { token } = served
    const body: AuthorizationHeaderJson = { authorizationHeader: `${token.tokenType} ${token.accessToken}` }
    if (token.tokenType === 'mtls_pop') {
      if (!token.binding)
        throw new SidecarError('internal_error', 'mtls_pop token without its binding certificate')
      body.bindingCertificate = bindingCertificateJson(token.binding, deps.exposePrivateKey)
    }
    return c.json(body)
  }
  app.get('/AuthorizationHeaderUnauthenticated/:api', authorizationHeader)
  app.post('/AuthorizationHeaderUnauthenticated/:api', authorizationHeader)

  const downstream = async (c: Context) => {
    const overrides = readOverrides(c, deps.logger)
    const { api, identity, proxy } = resolve(deps, c.req.param('api') ?? '', overrides)
    deps.access.authorize(c, identity.name)
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
    for (const [name, value] of overrides.extraQuery) target.searchParams.set(name, value)
    if (overrides.forceRefresh) {
      const cae: CaeRequest = {}
      forceRefresh(identity, apiScope(api), cae)
      if (cae.tokenSha256ToRefresh !== undefined) await deps.tokens.getToken(identity, apiScope(api), cae)
    }
    const headers = new Headers()
    for (const [name, value] of overrides.extraHeaders) headers.set(name, value)
    const contentType = overrides.get('contenttype') ?? c.req.header('content-type')
    const accept = overrides.get('acceptheader') ?? 'application/json'
    headers.set('accept', accept)
    // As the container does: the caller's body goes downstream only when it says what it is.
    const withBody = contentType !== undefined && method !== 'GET' && method !== 'HEAD'
    if (withBody) headers.set('content-type', contentType)
    const outgoing = new Request(target, {
      method,
      headers,
      ...(withBody ? { body: await readCallerBody(c.req.raw) } : {}),
      signal: c.req.raw.signal,
    })
    const res = await proxy.forward(api, target, outgoing)
    const content = (await readResourceAnswer(res, target)).toString('utf8')
    const body: DownstreamApiJson = {
      statusCode: res.status,
      headers: contentHeaders(res.headers, content),
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

/**
 * The api, and the identity that serves it: the api's configured identity, or the managed identity
 * `ManagedIdentity.UserAssignedClientId` names (a configured one, by client id).
 */
function resolve(
  deps: AgentIdCompatRoutesDeps,
  name: string,
  overrides: Overrides,
): { api: DownstreamApiConfig; identity: Identity; proxy: DownstreamProxy } {
  let configured: DownstreamApiConfig | undefined
  try {
    configured = deps.proxy?.api(name)
  } catch {
    // below
  }
  // The container answers 400 "Not able to resolve" for an api it does not know; so do we.
  if (!configured || !deps.proxy)
    throw new SidecarError('invalid_request', `Not able to resolve '${name}' (no such downstreamApis entry)`)
  const clientId = overrides.get('acquiretokenoptions.managedidentity.userassignedclientid')
  if (clientId === undefined) {
    return { api: configured, identity: deps.tokens.identity(configured.identity), proxy: deps.proxy }
  }
  const wanted = clientId.trim().toLowerCase()
  const identities = [...deps.tokens.identities.values()].filter(
    (i) =>
      i.config.kind === 'managedIdentity' &&
      i.config.selector.kind === 'clientId' &&
      i.config.selector.value.toLowerCase() === wanted,
  )
  // Prefer the one whose scheme is the api's identity's (a managed identity may be configured twice).
  const scheme = deps.tokens.identity(configured.identity).tokenType
  const identity = identities.find((i) => i.tokenType === scheme) ?? identities[0]
  if (!identity) {
    throw new SidecarError(
      'invalid_request',
      `optionsOverride.AcquireTokenOptions.ManagedIdentity.UserAssignedClientId names no configured managed identity (identities.*.managedIdentity.userAssignedClientId)`,
    )
  }
  // The proxy serves the api with the identity the caller chose (callers.allow checks it).
  return { api: { ...configured, identity: identity.name }, identity, proxy: deps.proxy }
}

/**
 * `ForceRefresh`: a forced refresh of the cached token, expressed as what CAE sends (the hash of the
 * token to replace), so it is rate-limited per cache entry like any CAE refresh and a caller in a
 * loop cannot turn it into an upstream storm. Nothing cached: the plain request fetches anyway.
 */
function forceRefresh(identity: Identity, scope: Scope, cae: CaeRequest): void {
  const cached = identity.cachedToken(scope)
  if (cached) cae.tokenSha256ToRefresh = createHash('sha256').update(cached.token.accessToken).digest('hex')
}

interface Overrides {
  get(key: Override): string | undefined
  getAll(key: Override): string[]
  has(key: Override): boolean
  forceRefresh: boolean
  extraHeaders: [string, string][]
  extraQuery: [string, string][]
}

/**
 * `optionsOverride.*` query parameters, keys lower-cased. Agent identities and the overrides this
 * sidecar cannot honour are refused; other unknown keys are ignored (logged at debug).
 */
function readOverrides(c: Context, logger: Logger): Overrides {
  const query = new URL(c.req.url).searchParams
  const values = new Map<string, string[]>()
  const extraHeaders = new Map<string, [string, string]>()
  const extraQuery = new Map<string, string>()
  const refused: string[] = []
  const ignored: string[] = []
  for (const [key, value] of query) {
    const lower = key.toLowerCase()
    if (!lower.startsWith('optionsoverride.')) {
      if (refusedParameters.has(lower)) refused.push(key)
      else ignored.push(key)
      continue
    }
    const name = lower.slice('optionsoverride.'.length)
    const original = key.slice('optionsoverride.'.length)
    if (name.startsWith(extraHeaderPrefix)) {
      const header = original.slice(extraHeaderPrefix.length)
      // The container skips an empty name or value; the last value wins.
      if (header === '' || value === '') continue
      extraHeaders.set(header.toLowerCase(), [header, value])
      continue
    }
    if (name.startsWith(extraQueryPrefix)) {
      const parameter = original.slice(extraQueryPrefix.length)
      if (parameter === '' || value === '') continue
      extraQuery.set(parameter, value)
      continue
    }
    if (!(supportedOverrides as readonly string[]).includes(name)) {
      if (refusedOverrides.has(name)) refused.push(key)
      else ignored.push(key)
      continue
    }
    values.set(name, [...(values.get(name) ?? []), value])
  }
  if (refused.length > 0) {
    throw new SidecarError(
      'invalid_request',
      `Not supported by credential-sidecar: ${refused.map((k) => k.slice(0, 80)).join(', ')} (agent identities, per-request tenants, FMI paths, PoP keys and long-running OBO are not; see the compatibility docs for the optionsOverride keys honoured)`,
    )
  }
  if (ignored.length > 0)
    logger.debug(
      { route: c.req.path, ignored: ignored.map((k) => k.slice(0, 80)) },
      'query parameters ignored',
    )
  for (const [lower, [name, value]] of extraHeaders) {
    if (!headerName.test(name) || /[\r\n\0]/.test(value))
      throw new SidecarError(
        'invalid_request',
        `optionsOverride.ExtraHeaderParameters: "${name.slice(0, 80)}" is not a valid header`,
      )
    if (refusedExtraHeaders.has(lower) || lower.startsWith('proxy-') || lower.startsWith('x-forwarded-'))
      throw new SidecarError(
        'invalid_request',
        `optionsOverride.ExtraHeaderParameters.${name} is refused: Authorization, Host, Cookie, Proxy-*, forwarding and hop-by-hop headers are the sidecar's to set`,
      )
  }
  const last = (key: Override) => values.get(key)?.at(-1)
  const requestAppToken = last('requestapptoken')
  if (requestAppToken !== undefined && requestAppToken.trim().toLowerCase() !== 'true') {
    throw new SidecarError(
      'invalid_request',
      'These routes serve app tokens only (optionsOverride.RequestAppToken must be true)',
    )
  }
  const baseUrl = last('baseurl')
  // As the container does: the configured base URL stands (the caller never chooses the host).
  if (baseUrl !== undefined) logger.debug({ route: c.req.path }, 'optionsOverride.BaseUrl ignored')
  const correlationId = last('acquiretokenoptions.correlationid')
  if (correlationId !== undefined) {
    // The container binds it only when it is a GUID; so do we, and log it for the caller to grep.
    if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(correlationId.trim()))
      logger.info(
        { route: c.req.path, caller_correlation_id: correlationId.trim().toLowerCase() },
        'AgentID request',
      )
  }
  return {
    get: last,
    getAll: (key) => values.get(key) ?? [],
    has: (key) => values.has(key),
    forceRefresh: last('acquiretokenoptions.forcerefresh')?.trim().toLowerCase() === 'true',
    extraHeaders: [...extraHeaders.values()],
    extraQuery: [...extraQuery],
  }
}

/** The api's configured scope, or the one `optionsOverride.Scopes` names (a single `…/.default`). */
function scopeOf(api: DownstreamApiConfig, overrides: { getAll(key: 'scopes'): string[] }): Scope {
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

/**
 * The container answers `new Dictionary(downstreamResult.Content.Headers)`: content headers only,
 * under .NET's names. .NET buffers the body and knows its length, so Content-Length is there
 * whenever there is content.
 */
function contentHeaders(headers: Headers, content: string): Record<string, string[]> {
  const grouped: Record<string, string[]> = {}
  for (const [name, value] of headers) {
    const canonical = contentHeaderNames.get(name.toLowerCase())
    if (canonical === undefined || canonical === 'Content-Length') continue
    grouped[canonical] = [...(grouped[canonical] ?? []), value]
  }
  if (content !== '') grouped['Content-Length'] = [String(Buffer.byteLength(content))]
  return grouped
}

/**
 * The most this route holds of a caller's body or of a resource's answer: it answers the resource's
 * body inside a JSON string, so unlike `/downstream` it cannot stream it, and the sidecar runs under
 * a pod memory limit (the container it imitates, on ASP.NET Core, caps request bodies at 30 MB).
 */
export const AGENT_ID_MAX_BODY_BYTES = 8 * 1024 * 1024

function readCallerBody(request: Request): Promise<Buffer> {
  return readBoundedBody(
    request.body,
    request.headers.get('content-length'),
    AGENT_ID_MAX_BODY_BYTES,
    () =>
      new SidecarError(
        'payload_too_large',
        `The request body is larger than ${AGENT_ID_MAX_BODY_BYTES} bytes`,
      ),
  )
}

function readResourceAnswer(res: Response, target: URL): Promise<Buffer> {
  return readBoundedBody(
    res.body,
    res.headers.get('content-length'),
    AGENT_ID_MAX_BODY_BYTES,
    () =>
      new SidecarError(
        'upstream_error',
        `${target.origin}${target.pathname} answered ${res.status} with a body larger than ${AGENT_ID_MAX_BODY_BYTES} bytes, more than this route can return inside its JSON answer; use /downstream/{api} to stream it`,
      ),
  )
}
