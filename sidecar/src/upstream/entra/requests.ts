import type { TokenType } from '../../model/token.ts'
import type { BindingCertificate } from '../../model/binding.ts'
import type { EntraTokenRequest } from './token-client.ts'

/**
 * Pure builders for the Entra token requests the daemon sends (upstream-protocol.md §3, §4). They
 * only shape form bodies and pick endpoints; signing and I/O happen elsewhere.
 */

export const jwtBearerAssertionType = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
/** A client assertion that is itself bound to the TLS client certificate (FIC leg 2 over mTLS). */
export const jwtPopAssertionType = 'urn:ietf:params:oauth:client-assertion-type:jwt-pop'

/**
 * `<resource>/.default` for a resource (lenient: for values the daemon built itself; caller input is
 * validated by `tokens/scope.ts` normaliseScope); a value that already is a scope (`…/.default`) names
 * its resource. The resource's trailing `/` is trimmed first (`https://x//.default` → `https://x/.default`), as MSAL.NET does
 * (`ManagedIdentity/V2/TokenRequestBuilder.cs`: `resource.TrimEnd('/') + "/.default"`).
 *
 * @example scopeForResource('https://graph.microsoft.com/') // 'https://graph.microsoft.com/.default'
 */
export function scopeForResource(resourceOrScope: string): string {
  const value = resourceOrScope.trim()
  const resource = value.endsWith('/.default') ? value.slice(0, -'/.default'.length) : value
  return `${resource.replace(/\/+$/, '')}/.default`
}

interface CommonRequestOptions {
  tokenEndpoint: string
  clientId: string
  /** Resource or `…/.default` scope. */
  scope: string
  identityName: string
  allowBearerFallback?: boolean
}

/**
 * Managed identity leg on the IMDS v2 mTLS endpoint: the binding certificate authenticates, no
 * client assertion. `token_type=mtls_pop` for a PoP token; for a Bearer token obtained with the
 * bound credential (`useBoundCredential`) no `token_type` at all, as MSAL's Bearer scheme sends
 * everywhere (`AuthScheme/Bearer/BearerAuthenticationOperation.cs`; the MSAL.NET MSI v2 design:
 * "omit (default bearer)"). `token_type=bearer` was in no released MSAL (upstream-protocol §3).
 * `clientId` is the one from the issuecredential answer.
 */
export function managedIdentityMtlsRequest(
  options: CommonRequestOptions & { binding: BindingCertificate; tokenType: TokenType },
): EntraTokenRequest {
  return withFallback(options, {
    tokenEndpoint: options.tokenEndpoint,
    form: {
      grant_type: 'client_credentials',
      client_id: options.clientId,
      scope: scopeForResource(options.scope),
      ...(options.tokenType === 'mtls_pop' ? { token_type: 'mtls_pop' } : {}),
    },
    clientCertificate: options.binding,
    expectedTokenType: options.tokenType,
    identityName: options.identityName,
    metricsEndpoint: 'entra.mtls.token',
  })
}

/**
 * Confidential client whose certificate authenticates over mTLS ("SNI", `useBoundCredential`) on
 * the mTLS host (`mtls-endpoint.ts`), with `client_info=2`.
 *
 * - mTLS PoP (`token_type=mtls_pop`, as MSAL.NET's MtlsPopAuthenticationOperation adds it): the
 *   TLS certificate alone authenticates, no client assertion.
 * - Bearer ("mTLS bearer transport"): a jwt-bearer `client_assertion` signed by the same certificate,
 *   with `x5c`, goes in the body too. MSAL.NET `CredentialMaterialResolver.cs` resolves this flow
 *   in OAuth mode (assertion in the body) and forces `sendX5C` ("ESTS requires it",
 *   `docs/mtls-bearer-transport.md`; without app enablement Entra answers AADSTS51000). Its older
 *   design note `sni_mtls_bearer_token_design.md` still says "empty body auth params": the code wins.
 */
export function boundCertificateRequest(
  options: CommonRequestOptions & {
    certificate: BindingCertificate
    tokenType: TokenType
    /** Bearer only: the private_key_jwt signed by `certificate` (aud = `tokenEndpoint`, with x5c). */
    assertion?: string
  },
): EntraTokenRequest {
  const form: Record<string, string> = {
    grant_type: 'client_credentials',
    client_id: options.clientId,
    scope: scopeForResource(options.scope),
    client_info: '2',
  }
  if (options.tokenType === 'mtls_pop') {
    form['token_type'] = 'mtls_pop'
  } else {
    if (!options.assertion) throw new TypeError('a Bearer token over mTLS needs a client assertion')
    form['client_assertion_type'] = jwtBearerAssertionType
    form['client_assertion'] = options.assertion
  }
  return withFallback(options, {
    tokenEndpoint: options.tokenEndpoint,
    form,
    clientCertificate: options.certificate,
    expectedTokenType: options.tokenType,
    identityName: options.identityName,
    metricsEndpoint: 'entra.mtls.token',
  })
}

/**
 * Confidential client with a certificate, not bound: a private_key_jwt (`client-assertion.ts`) to
 * the regular token endpoint. Bearer only.
 */
export function certificateAssertionRequest(
  options: CommonRequestOptions & { assertion: string },
): EntraTokenRequest {
  return regularBearerRequest(options, {
    client_assertion_type: jwtBearerAssertionType,
    client_assertion: options.assertion,
  })
}

/**
 * FIC leg 2: the leg-1 token is the client assertion. With `binding` (the leg-1 certificate, whose
 * x5t#S256 is the assertion's `cnf`) it goes as `jwt-pop` over mTLS with that certificate, and the
 * final token may be PoP; without it, as `jwt-bearer` to the regular endpoint, Bearer only. The
 * caller passes the matching endpoint (mTLS host when bound).
 */
export function federatedAssertionRequest(
  options: CommonRequestOptions & { assertion: string; binding?: BindingCertificate; tokenType: TokenType },
): EntraTokenRequest {
  if (options.tokenType === 'mtls_pop' && !options.binding) {
    throw new TypeError('an mtls_pop token needs a binding certificate: leg 1 must be a bound credential')
  }
  const form: Record<string, string> = {
    grant_type: 'client_credentials',
    client_id: options.clientId,
    scope: scopeForResource(options.scope),
    client_assertion_type: options.binding ? jwtPopAssertionType : jwtBearerAssertionType,
    client_assertion: options.assertion,
    // Every MSAL.NET client-credentials request sends it (ClientCredentialRequest.GetBodyParameters).
    client_info: '2',
  }
  if (options.tokenType === 'mtls_pop') form['token_type'] = 'mtls_pop'
  const req: EntraTokenRequest = {
    tokenEndpoint: options.tokenEndpoint,
    form,
    expectedTokenType: options.tokenType,
    identityName: options.identityName,
    metricsEndpoint: options.binding ? 'entra.mtls.token' : 'entra.token',
  }
  if (options.binding) req.clientCertificate = options.binding
  return withFallback(options, req)
}

/** Confidential client with a secret, regular endpoint, Bearer only. */
export function clientSecretRequest(
  options: CommonRequestOptions & { clientSecret: string },
): EntraTokenRequest {
  return regularBearerRequest(options, { client_secret: options.clientSecret })
}

/** client_credentials to the regular endpoint, Bearer only, authenticated by `credential` fields. */
function regularBearerRequest(
  options: CommonRequestOptions,
  credential: Record<string, string>,
): EntraTokenRequest {
  return {
    tokenEndpoint: options.tokenEndpoint,
    form: {
      grant_type: 'client_credentials',
      client_id: options.clientId,
      scope: scopeForResource(options.scope),
      ...credential,
    },
    expectedTokenType: 'Bearer',
    identityName: options.identityName,
    metricsEndpoint: 'entra.token',
  }
}

function withFallback(options: { allowBearerFallback?: boolean }, req: EntraTokenRequest): EntraTokenRequest {
  if (options.allowBearerFallback) req.allowBearerFallback = true
  return req
}

/**
 * Adds the `claims` parameter (a claims challenge merged with the client capabilities, see
 * `model/claims.ts`) to any Entra token request; unchanged when there is none.
 */
export function withClaims(req: EntraTokenRequest, claims: string | undefined): EntraTokenRequest {
  if (claims === undefined) return req
  return { ...req, form: { ...req.form, claims } }
}
