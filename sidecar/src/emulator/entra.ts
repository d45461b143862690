import { randomUUID, X509Certificate, type KeyObject } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer } from 'node:https'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TLSSocket } from 'node:tls'
import { decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose'
import { x5tS256 } from '../pki/x509.ts'
import { entraRegistry, tokenExchangeAudience } from './entra-registry.ts'
import { EntraRefusal, entraErrorBody, sendFault, sendJson } from './entra-responses.ts'
import { closeServer, listenOnLoopback } from './loopback-server.ts'
import type { EmulatedApp, EmulatorState } from './state.ts'

export { registerApp, registerWorkloadIssuer, tokenExchangeAudience } from './entra-registry.ts'
export type { AppRegistration, WorkloadIssuer } from './entra-registry.ts'

const jwtBearer = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
const jwtPop = 'urn:ietf:params:oauth:client-assertion-type:jwt-pop'
const maxBodyBytes = 64 * 1024

export interface EmulatedEntraOptions {
  /** When set, only these resources may be asked for; any other scope answers invalid_resource (AADSTS500011). */
  knownResources?: string[]
  /**
   * Also serve the mTLS endpoint on the regular host: a request that presents a client certificate
   * there is handled as on the mTLS host. This is how an authority host that does not start with
   * `login.` behaves (private clouds; contract §2: such a host "is used as-is for mTLS too"), so a
   * daemon pointed at `url` reaches both endpoints through it.
   */
  mtlsOnRegularHost?: boolean
  /**
   * Sees every token request as it arrived (host, form body, presented certificate), before it is
   * judged: for tests that assert what went on the wire. Test infrastructure only.
   */
  onTokenRequest?: (request: SeenTokenRequest) => void
}

/** A token request as the emulated Entra received it. */
export interface SeenTokenRequest {
  host: 'regular' | 'mtls'
  form: URLSearchParams
  /** x5t#S256 of the TLS client certificate, when one was presented. */
  clientCertificate?: string
}

export interface EmulatedEntra {
  /** Regular (login) endpoint, https, no client certificate. */
  url: string
  /** mTLS endpoint, https, TLS 1.2, requires a client certificate. */
  mtlsUrl: string
  close(): Promise<void>
}

/** A server certificate for 127.0.0.1 and localhost, issued by the emulator's CA for the key of `role`. */
export async function issueLoopbackServerCertificate(
  state: EmulatorState,
  role: 'entra-tls' | 'resource-tls' = 'entra-tls',
): Promise<{ cert: string; key: string }> {
  const keys = await state.keys.rsaKeyPair(role)
  const cert = state.ca.issue({
    publicKeyPem: keys.publicKeyPem,
    subject: [{ shortName: 'CN', value: 'localhost' }],
    serverNames: ['127.0.0.1', 'localhost'],
    usage: 'server',
    validityMs: 365 * 24 * 3600_000,
  })
  return { cert, key: keys.privateKeyPem }
}

/**
 * The emulated Entra token service: a regular HTTPS endpoint (client secret, private_key_jwt,
 * federated assertions; Bearer only) and an mTLS endpoint pinned to TLS 1.2 (IMDS v2 managed
 * identities, bound app certificates, FIC leg 2 with `jwt-pop`; Bearer or mtls_pop). Sets
 * `state.settings.entraBaseUrl` and `entraMtlsBaseUrl`.
 */
export async function startEmulatedEntra(
  state: EmulatorState,
  options: EmulatedEntraOptions = {},
): Promise<EmulatedEntra> {
  const { cert, key } = await issueLoopbackServerCertificate(state, 'entra-tls')
  const ctx: EntraContext = { state, options }
  const regular = createServer(
    {
      cert,
      key,
      minVersion: 'TLSv1.2',
      ...(options.mtlsOnRegularHost
        ? { ca: [state.ca.certificatePem], requestCert: true, rejectUnauthorized: false }
        : {}),
    },
    (req, res) =>
      void handle(ctx, options.mtlsOnRegularHost && presentsCertificate(req) ? 'mtls' : 'regular', req, res),
  )
  const mtls = createServer(
    {
      cert,
      key,
      ca: [state.ca.certificatePem],
      // Check the client certificate ourselves, so that a bad one gets an Entra-shaped answer.
      requestCert: true,
      rejectUnauthorized: false,
      // Entra asks for the client certificate only under TLS 1.2 (upstream-protocol.md §3).
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.2',
    },
    (req, res) => void handle(ctx, 'mtls', req, res),
  )
  const url = await listenOnLoopback(regular)
  const mtlsUrl = await listenOnLoopback(mtls)
  state.settings.entraBaseUrl = url
  state.settings.entraMtlsBaseUrl = mtlsUrl
  return {
    url,
    mtlsUrl,
    close: async () => {
      await Promise.all([closeServer(regular), closeServer(mtls)])
    },
  }
}

interface EntraContext {
  state: EmulatorState
  options: EmulatedEntraOptions
}

type Host = 'regular' | 'mtls'

interface TokenGrant {
  tokenType: 'Bearer' | 'mtls_pop'
  resource: string
  subject: string
  clientId: string
  /** x5t#S256 the token is bound to (mtls_pop only). */
  boundTo?: string
  extraClaims?: Record<string, unknown>
}

async function handle(
  ctx: EntraContext,
  host: Host,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const { state } = ctx
  const correlationId = headerValue(req, 'client-request-id') ?? randomUUID()
  const echo: Record<string, string> =
    headerValue(req, 'return-client-request-id') === 'true' ? { 'client-request-id': correlationId } : {}
  try {
    const path = new URL(req.url ?? '/', 'https://entra.invalid').pathname
    const tokenRoute = /^\/([^/]+)\/oauth2\/v2\.0\/token$/.exec(path)
    if (tokenRoute && req.method === 'POST') {
      const endpoint = host === 'mtls' ? 'entra.mtls.token' : 'entra.token'
      state.calls.record(endpoint)
      const fault = state.faults.take(endpoint)
      if (fault) {
        if (fault.delayMs) await sleep(fault.delayMs)
        sendFault(res, fault, correlationId, state.clock.now())
        return
      }
      const tenant = decodeURIComponent(tokenRoute[1] ?? '')
      if (tenant !== state.tenantId) {
        throw new EntraRefusal(400, 'invalid_request', 90002, `Tenant '${tenant}' not found.`)
      }
      const form = await readForm(req)
      const claims = form.get('claims')
      state.calls.recordCae(endpoint, claims === null ? {} : { claims })
      if (claims !== null && !isJsonObject(claims)) {
        throw new EntraRefusal(
          400,
          'invalid_request',
          90014,
          "The request body must contain a valid 'claims' parameter.",
        )
      }
      if (ctx.options.onTokenRequest) {
        const raw = (req.socket as TLSSocket).getPeerCertificate?.()?.raw
        ctx.options.onTokenRequest({
          host,
          form: new URLSearchParams(form),
          ...(raw ? { clientCertificate: x5tS256(raw) } : {}),
        })
      }
      const grant = host === 'mtls' ? await mtlsGrant(ctx, req, form) : await regularGrant(ctx, tenant, form)
      sendJson(res, 200, await tokenResponse(ctx, host, grant), echo)
      return
    }
    if (req.method === 'GET') {
      const config = /^\/([^/]+)\/v2\.0\/\.well-known\/openid-configuration$/.exec(path)
      if (config) {
        sendJson(res, 200, openIdConfiguration(state, decodeURIComponent(config[1] ?? '')))
        return
      }
      if (/^(\/[^/]+)?\/discovery\/v2\.0\/keys$/.test(path)) {
        sendJson(res, 200, state.tokens.jwks())
        return
      }
    }
    sendJson(res, 404, { error: 'not_found', error_description: `no route for ${req.method} ${path}` })
  } catch (error) {
    const refusal =
      error instanceof EntraRefusal
        ? error
        : new EntraRefusal(500, 'server_error', 90033, 'The emulated Entra failed unexpectedly.')
    sendJson(
      res,
      refusal.status,
      entraErrorBody(
        { error: refusal.error, aadsts: refusal.aadsts, message: refusal.message },
        correlationId,
        state.clock.now(),
      ),
      echo,
    )
  }
}

// ---- mTLS endpoint ------------------------------------------------------------------------------

async function mtlsGrant(
  ctx: EntraContext,
  req: IncomingMessage,
  form: URLSearchParams,
): Promise<TokenGrant> {
  const { state } = ctx
  const { clientId, resource, tokenType } = commonParameters(ctx, form)
  const presented = presentedCertificate(state, req)
  if (form.has('client_secret')) {
    throw new EntraRefusal(
      400,
      'invalid_request',
      900144,
      'client_secret is not accepted on the mTLS endpoint.',
    )
  }
  if (tokenType === 'mtls_pop' && state.settings.boundTokensRefused) {
    throw new EntraRefusal(
      400,
      'invalid_request',
      3921996,
      `Tenant '${state.tenantId}' is not allowed to request bound tokens (token_type mtls_pop).`,
    )
  }
  const assertionType = form.get('client_assertion_type')
  const popType = state.settings.entraIgnoresPopRequest ? 'Bearer' : tokenType
  const bound = (grant: Omit<TokenGrant, 'tokenType' | 'boundTo'>): TokenGrant =>
    popType === 'mtls_pop'
      ? { ...grant, tokenType: 'mtls_pop', boundTo: presented.x5tS256 }
      : { ...grant, tokenType: 'Bearer' }

  if (assertionType === jwtPop) {
    const app = requireApp(state, clientId)
    const assertion = requireParameter(form, 'client_assertion')
    const claims = await verifyIssuedAssertion(state, assertion)
    const cnf = (claims['cnf'] as { 'x5t#S256'?: unknown } | undefined)?.['x5t#S256']
    if (typeof cnf !== 'string') {
      throw new EntraRefusal(
        401,
        'invalid_client',
        700027,
        'A jwt-pop client assertion must carry a cnf x5t#S256 claim.',
      )
    }
    if (cnf !== presented.x5tS256) {
      throw new EntraRefusal(
        401,
        'invalid_client',
        700027,
        'The client assertion is bound to a different certificate than the one presented in the TLS handshake.',
      )
    }
    requireFederatedSubject(app, claims)
    return bound({ resource, clientId, subject: appObjectId(app) })
  }
  if (assertionType !== null && assertionType !== jwtBearer) {
    throw new EntraRefusal(
      400,
      'invalid_request',
      900144,
      `client_assertion_type '${assertionType}' is not accepted on the mTLS endpoint; use ${jwtPop} or ${jwtBearer}.`,
    )
  }

  const mi = state.managedIdentities.find((m) => m.clientId === clientId)
  if (mi && assertionType === null) {
    if (presented.commonName !== clientId) {
      throw new EntraRefusal(
        401,
        'invalid_client',
        700027,
        `The client certificate subject does not match the managed identity '${clientId}'.`,
      )
    }
    const extraClaims: Record<string, unknown> = { oid: mi.objectId }
    if (mi.resourceId) extraClaims['xms_mirid'] = mi.resourceId
    return bound({ resource, clientId, subject: mi.objectId, extraClaims })
  }

  // An app authenticating with its certificate in the TLS handshake ("SNI" / mTLS client auth).
  const app = requireApp(state, clientId)
  if (!app.mtlsClientAuth) {
    throw new EntraRefusal(
      412,
      'invalid_request',
      51000,
      `MtlsClientAuth is/are disabled for application '${clientId}'.`,
    )
  }
  if (assertionType === jwtBearer) {
    // Bearer over mTLS: the body also carries a private_key_jwt signed by the same certificate,
    // with x5c (MSAL.NET CredentialMaterialResolver: OAuth mode, sendX5C forced).
    const assertion = requireParameter(form, 'client_assertion')
    const thumbprint = assertionThumbprint(assertion)
    if (thumbprint !== presented.x5tS256) {
      throw new EntraRefusal(
        401,
        'invalid_client',
        500181,
        'The TLS client certificate does not match the certificate of the client assertion (CertificateValidationFailedTlsCertMismatch).',
      )
    }
    if (!hasX5c(assertion)) {
      throw new EntraRefusal(
        401,
        'invalid_client',
        700027,
        'A client assertion sent with a certificate over mTLS must carry the x5c header.',
      )
    }
    await verifyPrivateKeyJwt(state, app, state.tenantId, assertion)
    return bound({ resource, clientId, subject: appObjectId(app) })
  }
  if (tokenType === 'Bearer') {
    throw new EntraRefusal(
      401,
      'invalid_client',
      7000218,
      "The request body must contain the following parameter: 'client_assertion' (a Bearer token over mTLS needs the client assertion as well as the certificate).",
    )
  }
  if (!app.certificateThumbprints.has(presented.x5tS256)) {
    throw new EntraRefusal(
      401,
      'invalid_client',
      700027,
      `Client certificate is not registered on application '${clientId}'. [Thumbprint of certificate used by client: '${presented.x5tS256}']`,
    )
  }
  return bound({ resource, clientId, subject: appObjectId(app) })
}

/** The x5t#S256 header of a client assertion (undefined when it has none or is not a JWT). */
function assertionThumbprint(assertion: string): string | undefined {
  try {
    const thumbprint = decodeProtectedHeader(assertion)['x5t#S256']
    return typeof thumbprint === 'string' ? thumbprint : undefined
  } catch {
    throw new EntraRefusal(401, 'invalid_client', 50027, 'JWT token is invalid or malformed.')
  }
}

function hasX5c(assertion: string): boolean {
  const x5c = decodeProtectedHeader(assertion).x5c
  return Array.isArray(x5c) && x5c.length > 0
}

function presentsCertificate(req: IncomingMessage): boolean {
  return Boolean((req.socket as TLSSocket).getPeerCertificate?.()?.raw)
}

interface PresentedCertificate {
  x5tS256: string
  commonName: string | undefined
}

function presentedCertificate(state: EmulatorState, req: IncomingMessage): PresentedCertificate {
  const socket = req.socket as TLSSocket
  const peer = socket.getPeerCertificate(true)
  if (!peer || !peer.raw) {
    throw new EntraRefusal(
      401,
      'invalid_client',
      7000218,
      "The request body must contain the following parameter: 'client_assertion' or 'client_secret', or a client certificate must be presented.",
    )
  }
  if (!socket.authorized) {
    throw new EntraRefusal(
      401,
      'invalid_client',
      700027,
      `The client certificate is not trusted (${String(socket.authorizationError ?? 'unknown issuer')}).`,
    )
  }
  const x509 = new X509Certificate(peer.raw)
  const now = state.clock.now()
  if (Date.parse(x509.validTo) < now || Date.parse(x509.validFrom) > now) {
    throw new EntraRefusal(
      401,
      'invalid_client',
      700027,
      'The client certificate is expired or not yet valid.',
    )
  }
  const cn = peer.subject?.CN
  return { x5tS256: x5tS256(peer.raw), commonName: Array.isArray(cn) ? cn[0] : cn }
}

// ---- regular endpoint ---------------------------------------------------------------------------

async function regularGrant(ctx: EntraContext, tenant: string, form: URLSearchParams): Promise<TokenGrant> {
  const { state } = ctx
  const { clientId, resource, tokenType } = commonParameters(ctx, form)
  if (tokenType === 'mtls_pop') {
    throw new EntraRefusal(
      400,
      'invalid_request',
      900144,
      'token_type mtls_pop requires the mTLS endpoint: present the certificate in a TLS 1.2 handshake there.',
    )
  }
  const app = requireApp(state, clientId)
  const grant = { tokenType: 'Bearer' as const, resource, clientId, subject: appObjectId(app) }
  const secret = form.get('client_secret')
  if (secret !== null) {
    if (!app.clientSecrets.has(secret)) {
      throw new EntraRefusal(
        401,
        'invalid_client',
        7000215,
        `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`,
      )
    }
    return grant
  }
  const assertionType = form.get('client_assertion_type')
  if (assertionType === null) {
    throw new EntraRefusal(
      401,
      'invalid_client',
      7000218,
      "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    )
  }
  if (assertionType === jwtPop) {
    throw new EntraRefusal(
      400,
      'invalid_request',
      900144,
      'A jwt-pop client assertion is only accepted on the mTLS endpoint.',
    )
  }
  if (assertionType !== jwtBearer) {
    throw new EntraRefusal(
      400,
      'invalid_request',
      900144,
      `Unsupported client_assertion_type '${assertionType}'.`,
    )
  }
  const assertion = requireParameter(form, 'client_assertion')
  let unverified: JWTPayload
  try {
    unverified = decodeJwt(assertion)
  } catch {
    throw new EntraRefusal(401, 'invalid_client', 50027, 'JWT token is invalid or malformed.')
  }
  if (unverified.iss === clientId && unverified.sub === clientId) {
    await verifyPrivateKeyJwt(state, app, tenant, assertion)
    return grant
  }
  const registry = entraRegistry(state)
  const issuerKey = typeof unverified.iss === 'string' ? registry.issuerKeys.get(unverified.iss) : undefined
  if (issuerKey) {
    const claims = await verifyWorkloadAssertion(state, issuerKey, assertion)
    if (!app.federatedIssuers.some((f) => f.issuer === claims.iss && f.subject === claims.sub)) {
      throw noMatchingFederatedRecord(claims)
    }
    return grant
  }
  const claims = await verifyIssuedAssertion(state, assertion)
  if (claims['cnf'] !== undefined) {
    throw new EntraRefusal(
      401,
      'invalid_client',
      700027,
      'The client assertion is bound to a certificate: present it as jwt-pop over the mTLS endpoint with that certificate.',
    )
  }
  requireFederatedSubject(app, claims)
  return grant
}

async function verifyPrivateKeyJwt(
  state: EmulatorState,
  app: EmulatedApp,
  tenant: string,
  assertion: string,
): Promise<void> {
  let header: ReturnType<typeof decodeProtectedHeader>
  try {
    header = decodeProtectedHeader(assertion)
  } catch {
    throw new EntraRefusal(401, 'invalid_client', 50027, 'JWT token is invalid or malformed.')
  }
  const thumbprint = header['x5t#S256']
  if (typeof thumbprint !== 'string') {
    throw new EntraRefusal(401, 'invalid_client', 700027, 'Client assertion contains no x5t#S256 header.')
  }
  const certificatePem = assertionCertificate(state, app, thumbprint, header.x5c)
  // The token endpoint the assertion is posted to (MSAL: `aud` = that endpoint, so the mTLS one
  // for Bearer over mTLS) or the issuer.
  const expectedAudience = [state.settings.entraBaseUrl, state.settings.entraMtlsBaseUrl].flatMap((base) => [
    `${base}/${tenant}/oauth2/v2.0/token`,
    `${base}/${tenant}/v2.0`,
  ])
  try {
    await jwtVerify(assertion, new X509Certificate(certificatePem).publicKey, {
      algorithms: ['PS256', 'RS256'],
      audience: expectedAudience,
      issuer: app.clientId,
      subject: app.clientId,
      currentDate: new Date(state.clock.now()),
      requiredClaims: ['exp', 'jti'],
    })
  } catch (error) {
    throw refusalForJoseError(error, 'client assertion')
  }
}

/**
 * The certificate a private_key_jwt names: one registered on the app, or (subject name + issuer,
 * "SNI") an `x5c` leaf issued by the emulator's CA to CN=clientId.
 */
function assertionCertificate(
  state: EmulatorState,
  app: EmulatedApp,
  thumbprint: string,
  x5c: unknown,
): string {
  if (Array.isArray(x5c) && typeof x5c[0] === 'string') {
    let leaf: X509Certificate
    try {
      leaf = new X509Certificate(Buffer.from(x5c[0], 'base64'))
    } catch {
      throw new EntraRefusal(401, 'invalid_client', 700027, 'The x5c header does not hold a certificate.')
    }
    if (x5tS256(leaf.raw) !== thumbprint) {
      throw new EntraRefusal(
        401,
        'invalid_client',
        700027,
        'The x5c leaf certificate does not match the x5t#S256 header.',
      )
    }
    const ca = new X509Certificate(state.ca.certificatePem)
    const subjectNameIssuer =
      leaf.checkIssued(ca) &&
      leaf.verify(ca.publicKey) &&
      /(^|\n)CN=([^\n]*)/.exec(leaf.subject)?.[2] === app.clientId
    if (subjectNameIssuer || app.certificateThumbprints.has(thumbprint)) return leaf.toString()
  }
  const registered = app.certificateThumbprints.has(thumbprint)
    ? entraRegistry(state).certificates.get(thumbprint)
    : undefined
  if (!registered) {
    throw new EntraRefusal(
      401,
      'invalid_client',
      700027,
      `Client assertion failed signature validation. [Reason - The key was not found., Thumbprint of key used by client: '${thumbprint}']`,
    )
  }
  return registered
}

/** A token the emulator itself issued (FIC leg 1), for api://AzureADTokenExchange. */
async function verifyIssuedAssertion(state: EmulatorState, assertion: string): Promise<JWTPayload> {
  try {
    return await state.tokens.verify(assertion, { audience: tokenExchangeAudience })
  } catch (error) {
    throw refusalForJoseError(error, 'federated assertion')
  }
}

async function verifyWorkloadAssertion(
  state: EmulatorState,
  key: KeyObject,
  assertion: string,
): Promise<JWTPayload> {
  try {
    const { payload } = await jwtVerify(assertion, key, {
      audience: tokenExchangeAudience,
      currentDate: new Date(state.clock.now()),
      requiredClaims: ['exp', 'sub'],
    })
    return payload
  } catch (error) {
    throw refusalForJoseError(error, 'federated assertion')
  }
}

function requireFederatedSubject(app: EmulatedApp, claims: JWTPayload): void {
  if (typeof claims.sub !== 'string' || !app.federatedSubjects.has(claims.sub))
    throw noMatchingFederatedRecord(claims)
}

function noMatchingFederatedRecord(claims: JWTPayload): EntraRefusal {
  return new EntraRefusal(
    400,
    'invalid_request',
    70021,
    `No matching federated identity record found for presented assertion. Assertion Issuer: '${String(claims.iss)}'. Assertion Subject: '${String(claims.sub)}'. Assertion Audience: '${String(claims.aud)}'.`,
  )
}

function refusalForJoseError(error: unknown, what: string): EntraRefusal {
  if (error instanceof joseErrors.JWTExpired) {
    return new EntraRefusal(401, 'invalid_client', 700024, `The ${what} is not within its valid time range.`)
  }
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    if (error.claim === 'nbf' || error.claim === 'iat') {
      return new EntraRefusal(
        401,
        'invalid_client',
        700024,
        `The ${what} is not within its valid time range.`,
      )
    }
    if (error.claim === 'aud') {
      return new EntraRefusal(
        400,
        'invalid_request',
        700212,
        `The ${what} has an audience this endpoint does not accept.`,
      )
    }
    return new EntraRefusal(
      401,
      'invalid_client',
      700027,
      `The ${what} has an invalid '${error.claim}' claim.`,
    )
  }
  if (
    error instanceof joseErrors.JWSSignatureVerificationFailed ||
    error instanceof joseErrors.JWKSNoMatchingKey
  ) {
    return new EntraRefusal(401, 'invalid_client', 700027, `The ${what} failed signature validation.`)
  }
  return new EntraRefusal(401, 'invalid_client', 50027, `The ${what} is invalid or malformed.`)
}

// ---- shared ---------------------------------------------------------------------------------------

function commonParameters(
  ctx: EntraContext,
  form: URLSearchParams,
): { clientId: string; resource: string; tokenType: 'Bearer' | 'mtls_pop' } {
  const grantType = requireParameter(form, 'grant_type')
  if (grantType !== 'client_credentials') {
    throw new EntraRefusal(
      400,
      'unsupported_grant_type',
      70003,
      `The app requested an unsupported grant type '${grantType}'.`,
    )
  }
  const clientId = requireParameter(form, 'client_id')
  const scope = requireParameter(form, 'scope')
  if (!scope.endsWith('/.default') || /\s/.test(scope)) {
    throw new EntraRefusal(
      400,
      'invalid_scope',
      1002012,
      `The provided value for scope ${scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`,
    )
  }
  const resource = scope.slice(0, -'/.default'.length)
  if (ctx.options.knownResources && !ctx.options.knownResources.includes(resource)) {
    throw new EntraRefusal(
      400,
      'invalid_resource',
      500011,
      `The resource principal named ${resource} was not found in the tenant named ${ctx.state.tenantId}.`,
    )
  }
  const requested = form.get('token_type')?.toLowerCase()
  if (requested !== undefined && requested !== 'bearer' && requested !== 'mtls_pop') {
    throw new EntraRefusal(
      400,
      'invalid_request',
      900144,
      `Unsupported token_type '${form.get('token_type')}'.`,
    )
  }
  return { clientId, resource, tokenType: requested === 'mtls_pop' ? 'mtls_pop' : 'Bearer' }
}

function requireApp(state: EmulatorState, clientId: string): EmulatedApp {
  const app = state.apps.get(clientId)
  if (!app) {
    throw new EntraRefusal(
      400,
      'unauthorized_client',
      700016,
      `Application with identifier '${clientId}' was not found in the directory '${state.tenantId}'.`,
    )
  }
  return app
}

/** Apps have no separate service principal in the emulator: the client id doubles as object id. */
function appObjectId(app: EmulatedApp): string {
  return app.clientId
}

function requireParameter(form: URLSearchParams, name: string): string {
  const value = form.get(name)
  if (value === null || value === '') {
    throw new EntraRefusal(
      400,
      'invalid_request',
      900144,
      `The request body must contain the following parameter: '${name}'.`,
    )
  }
  return value
}

async function tokenResponse(
  ctx: EntraContext,
  host: Host,
  grant: TokenGrant,
): Promise<Record<string, unknown>> {
  const { state } = ctx
  const lifetime = state.settings.accessTokenLifetimeSec
  const claims: Record<string, unknown> = {
    aud: grant.resource,
    iss: issuer(state, state.tenantId),
    tid: state.tenantId,
    sub: grant.subject,
    oid: grant.subject,
    appid: grant.clientId,
    azp: grant.clientId,
    idtyp: 'app',
    ver: '2.0',
    ...grant.extraClaims,
  }
  if (grant.tokenType === 'mtls_pop' && grant.boundTo) claims['cnf'] = { 'x5t#S256': grant.boundTo }
  const accessToken = await state.tokens.mint(
    claims as Record<string, unknown> & { aud: string; iss: string; tid: string; sub: string },
    lifetime,
  )
  // The mTLS endpoint answers numbers as strings ("3599"), as in MSAL.NET's test payloads; the
  // regular one as numbers. Clients must accept both.
  const num = (n: number) => (host === 'mtls' ? String(n) : n)
  const body: Record<string, unknown> = {
    token_type: grant.tokenType,
    expires_in: num(lifetime),
    ext_expires_in: num(lifetime),
    access_token: accessToken,
  }
  if (state.settings.refreshInSec !== undefined) body['refresh_in'] = num(state.settings.refreshInSec)
  return body
}

function issuer(state: EmulatorState, tenant: string): string {
  return `${state.settings.entraBaseUrl || 'https://login.microsoftonline.com'}/${tenant}/v2.0`
}

function openIdConfiguration(state: EmulatorState, tenant: string): Record<string, unknown> {
  const base = state.settings.entraBaseUrl
  return {
    issuer: issuer(state, tenant),
    token_endpoint: `${base}/${tenant}/oauth2/v2.0/token`,
    jwks_uri: `${base}/${tenant}/discovery/v2.0/keys`,
    token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'tls_client_auth'],
    tls_client_certificate_bound_access_tokens: true,
    mtls_endpoint_aliases: {
      token_endpoint: `${state.settings.entraMtlsBaseUrl}/${tenant}/oauth2/v2.0/token`,
    },
    id_token_signing_alg_values_supported: ['RS256'],
  }
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name]
  return Array.isArray(value) ? value[0] : value
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = headerValue(req, 'content-type') ?? ''
  if (!type.toLowerCase().startsWith('application/x-www-form-urlencoded')) {
    throw new EntraRefusal(
      400,
      'invalid_request',
      900144,
      'The request body must be application/x-www-form-urlencoded.',
    )
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > maxBodyBytes)
      throw new EntraRefusal(413, 'invalid_request', 900144, 'The request body is too large.')
    chunks.push(chunk)
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
}

function isJsonObject(text: string): boolean {
  try {
    const value: unknown = JSON.parse(text)
    return typeof value === 'object' && value !== null && !Array.isArray(value)
  } catch {
    return false
  }
}
