import { randomUUID, X509Certificate } from 'node:crypto'
import type { ManagedIdentitySelector } from '../../config/types.ts'
import { SidecarError } from '../../core/errors.ts'
import { callUpstream } from '../client.ts'
import { describeEndpoint, parseJsonObject, type HttpResponse } from '../http.ts'
import { imdsRetryPolicy, type RetryPolicy } from '../retry.ts'
import { cuIdJson } from '../../pki/csr.ts'
import type { Runtime } from '../../core/runtime.ts'
import { imdsErrorDetail, imdsFailure } from './errors.ts'
import { imdsSelectorParam } from './selector.ts'

/**
 * The IMDS v2 credential endpoint (MSAL.NET `ManagedIdentity/V2/ImdsV2ManagedIdentitySource.cs`):
 * `getplatformmetadata` says who this VM and identity are, `issuecredential` turns a CSR into a
 * binding certificate for the Entra mTLS token endpoint.
 */

/** getplatformmetadata: what the CSR is built from. */
export interface PlatformMetadata {
  cuId: { vmId?: string; vmssId?: string } & Record<string, unknown>
  /** The cuId JSON for the CSR attribute (IMDS's key order, nulls omitted). */
  cuIdJson: string
  clientId: string
  tenantId: string
  attestationEndpoint: string
}

/** issuecredential: the binding certificate and where to use it. */
export interface IssuedCredential {
  /** The identity's real client id (a GUID): the one to send on the token leg. */
  clientId: string
  tenantId: string
  certificateDer: Buffer
  identityType: string
  mtlsAuthenticationEndpoint: string
  /** `mtls_authentication_endpoint` + `/{tenant_id}/oauth2/v2.0/token`. */
  tokenEndpoint: string
}

export interface ImdsV2ClientOptions {
  runtime: Runtime
  /** e.g. http://169.254.169.254 */
  imdsEndpoint: string
}

/** The `cred-api-version` IMDS v2 speaks (MSAL `ImdsV2ApiVersion`). */
export const IMDS_V2_API_VERSION = '2.0'
const PLATFORM_METADATA_PATH = '/metadata/identity/getplatformmetadata'
const ISSUE_CREDENTIAL_PATH = '/metadata/identity/issuecredential'

export class ImdsV2Client {
  readonly #runtime: Runtime
  readonly #base: string

  constructor(options: ImdsV2ClientOptions) {
    this.#runtime = options.runtime
    this.#base = options.imdsEndpoint.replace(/\/+$/, '')
  }

  /**
   * GET getplatformmetadata. During an acquisition a 404 is retried like any other IMDS failure
   * (MSAL.NET `GetCsrMetadataAsync` sends it with the IMDS policy, whose condition
   * `HttpRetryConditions.Imds` retries 404); only a 404 that persists means "no IMDS v2 here". `probe: true` (doctor) uses MSAL's `ImdsProbe` condition
   * instead: a 404 answers at once. A 200 whose `Server` header does not name IMDS is refused —
   * something else (a proxy, a captive portal) is answering on the IMDS address.
   */
  async getPlatformMetadata(
    selector: ManagedIdentitySelector,
    signal?: AbortSignal,
    options: { probe?: boolean } = {},
  ): Promise<PlatformMetadata> {
    const url = this.#url(PLATFORM_METADATA_PATH, selector)
    const endpoint = describeEndpoint(url)
    const res = await this.#send(
      'imds.getplatformmetadata',
      { method: 'GET', url },
      imdsRetryPolicy({ retryNotFound: !options.probe }),
      signal,
      (res) =>
        res.status === 404
          ? noImdsV2(
              `${endpoint} answered 404${options.probe ? '' : ' after retries'}: this host has no IMDS v2 credential endpoint, which mTLS PoP (and bound ` +
                `credentials) for a managed identity need; use protocolScheme Bearer (IMDS v1) here`,
              endpoint,
            )
          : undefined,
    )

    const server = res.headers['server'] ?? ''
    if (!/imds/i.test(server)) {
      throw new SidecarError(
        'upstream_error',
        `${endpoint} answered without an IMDS Server header (got ${JSON.stringify(server.slice(0, 80))}): ` +
          `not the Azure Instance Metadata Service`,
        { reason: 'imds_v2_unavailable', upstream: { endpoint, status: res.status } },
      )
    }

    const body = parseJsonObject(res, endpoint)
    const cuId = body['cuId']
    const clientId = body['clientId']
    const tenantId = body['tenantId']
    const attestationEndpoint = body['attestationEndpoint']
    const cuIdValid =
      cuId !== null &&
      typeof cuId === 'object' &&
      !Array.isArray(cuId) &&
      (nonEmpty((cuId as Record<string, unknown>)['vmId']) ||
        nonEmpty((cuId as Record<string, unknown>)['vmssId']))
    if (!cuIdValid || !nonEmpty(clientId) || !nonEmpty(tenantId) || !nonEmpty(attestationEndpoint)) {
      const missing = [
        cuIdValid ? '' : 'cuId',
        nonEmpty(clientId) ? '' : 'clientId',
        nonEmpty(tenantId) ? '' : 'tenantId',
        nonEmpty(attestationEndpoint) ? '' : 'attestationEndpoint',
      ].filter(Boolean)
      throw malformed(endpoint, res.status, `platform metadata lacks ${missing.join(', ')}`)
    }
    const cuIdObject = cuId as PlatformMetadata['cuId']
    return { cuId: cuIdObject, cuIdJson: cuIdJson(cuIdObject), clientId, tenantId, attestationEndpoint }
  }

  /**
   * POST issuecredential with the CSR (plain base64 DER), with the IMDS retry policy (404
   * included, as MSAL.NET's `ExecuteCertificateRequestAsync`). 400 "Attestation Token is missing" is the
   * platform demanding a KeyGuard attestation the daemon cannot give; other 400s (identity not
   * found) are the caller's problem and pass through.
   */
  async issueCredential(
    selector: ManagedIdentitySelector,
    csrBase64: string,
    signal?: AbortSignal,
  ): Promise<IssuedCredential> {
    const url = this.#url(ISSUE_CREDENTIAL_PATH, selector)
    const endpoint = describeEndpoint(url)
    const res = await this.#send(
      'imds.issuecredential',
      {
        method: 'POST',
        url,
        body: JSON.stringify({ csr: csrBase64 }),
        headers: { 'Content-Type': 'application/json' },
      },
      imdsRetryPolicy(),
      signal,
      (res) => {
        if (res.status === 400) {
          const detail = imdsErrorDetail(endpoint, res)
          const text = `${detail.error ?? ''} ${detail.errorDescription ?? ''}`
          if (/attestation/i.test(text)) {
            return new SidecarError(
              'upstream_error',
              `${endpoint} demands an attestation token (KeyGuard key attestation), which a software key ` +
                `cannot provide: this platform does not issue binding certificates for unattested keys`,
              { reason: 'attestation_required', upstream: detail },
            )
          }
        }
        if (res.status === 404) {
          return noImdsV2(
            `${endpoint} answered 404 after retries: this host has no IMDS v2 credential endpoint`,
            endpoint,
          )
        }
        return undefined
      },
    )

    const body = parseJsonObject(res, endpoint)
    const fields = [
      'client_id',
      'tenant_id',
      'certificate',
      'identity_type',
      'mtls_authentication_endpoint',
    ] as const
    const missing = fields.filter((f) => !nonEmpty(body[f]))
    if (missing.length > 0)
      throw malformed(endpoint, res.status, `credential response lacks ${missing.join(', ')}`)
    const clientId = body['client_id'] as string
    const tenantId = body['tenant_id'] as string
    const identityType = body['identity_type'] as string
    const mtlsAuthenticationEndpoint = body['mtls_authentication_endpoint'] as string

    // Whitespace (a base64 wrapped at 64 or 76 columns) is dropped, as MSAL.NET's
    // Convert.FromBase64String does: the certificate is the same DER either way.
    const certificate = (body['certificate'] as string).replace(/\s+/g, '')
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(certificate)) {
      throw malformed(endpoint, res.status, 'certificate is not base64 DER')
    }
    const certificateDer = Buffer.from(certificate, 'base64')
    try {
      new X509Certificate(certificateDer)
    } catch {
      throw malformed(endpoint, res.status, 'certificate is not an X.509 certificate')
    }
    let tokenEndpoint: string
    try {
      tokenEndpoint = mtlsTokenEndpoint(mtlsAuthenticationEndpoint, tenantId)
    } catch (error) {
      throw malformed(endpoint, res.status, (error as Error).message)
    }
    return { clientId, tenantId, certificateDer, identityType, mtlsAuthenticationEndpoint, tokenEndpoint }
  }

  #url(path: string, selector: ManagedIdentitySelector): URL {
    const url = new URL(this.#base + path)
    url.searchParams.set('cred-api-version', IMDS_V2_API_VERSION)
    const param = imdsSelectorParam(selector, 'mi_res_id')
    if (param) url.searchParams.set(param[0], param[1])
    return url
  }

  /**
   * One IMDS v2 call. `errorFor` answers what this endpoint's own statuses mean (its 404, a 400
   * that demands attestation); any other answer but 200 is an IMDS failure (`imdsFailure`).
   */
  #send(
    name: string,
    req: { method: 'GET' | 'POST'; url: URL; body?: string; headers?: Record<string, string> },
    policy: RetryPolicy,
    signal: AbortSignal | undefined,
    errorFor: (res: HttpResponse) => SidecarError | undefined,
  ): Promise<HttpResponse> {
    const { clock, logger } = this.#runtime
    const endpoint = describeEndpoint(req.url)
    // One request id for the logical call, so IMDS logs tie the retries together.
    const requestId = randomUUID()
    const headers = { ...req.headers, Metadata: 'true', 'x-ms-client-request-id': requestId }
    return callUpstream(this.#runtime, {
      metricsEndpoint: name,
      request: () => ({ ...req, headers }),
      policy,
      signal,
      logRetry: ({ retry, delayMs, failure }) =>
        logger.debug(
          {
            endpoint: name,
            retry,
            delay_ms: delayMs,
            failure: failure.kind === 'status' ? failure.status : failure.reason,
            request_id: requestId,
          },
          'retrying IMDS v2 call',
        ),
      errorFor: (res) =>
        errorFor(res) ?? (res.status === 200 ? undefined : imdsFailure(res, endpoint, clock.now())),
    })
  }
}

/**
 * Token URL for the bound leg: `mtls_authentication_endpoint` with trailing slashes trimmed, then
 * `/{tenant_id}/oauth2/v2.0/token` (MSAL `CreateRequestAsync`). Must be https: the leg presents
 * the binding certificate in a TLS handshake.
 */
export function mtlsTokenEndpoint(mtlsAuthenticationEndpoint: string, tenantId: string): string {
  let base: URL
  try {
    base = new URL(mtlsAuthenticationEndpoint.trim())
  } catch {
    throw new Error('mtls_authentication_endpoint is not a URL')
  }
  if (base.protocol !== 'https:') throw new Error('mtls_authentication_endpoint is not an https URL')
  // Appending a path to a URL with a query or fragment garbles it (the path lands in the query), and
  // userinfo would send credentials nobody configured: refused (contract §3).
  if (
    base.search ||
    base.hash ||
    base.username ||
    base.password ||
    /[?#@]/.test(mtlsAuthenticationEndpoint)
  ) {
    throw new Error('mtls_authentication_endpoint carries a query, fragment or userinfo; refused')
  }
  const path = base.pathname.replace(/\/+$/, '')
  const tenant = encodeURIComponent(tenantId.replace(/^\/+|\/+$/g, ''))
  return `${base.protocol}//${base.host}${path}/${tenant}/oauth2/v2.0/token`
}

function nonEmpty(value: unknown): value is string {
  return typeof value === 'string' && value.trim() !== ''
}

/** A 404 that persists: there is no IMDS v2 credential endpoint on this host. */
function noImdsV2(message: string, endpoint: string): SidecarError {
  return new SidecarError('upstream_error', message, {
    reason: 'imds_v2_unavailable',
    upstream: { endpoint, status: 404 },
  })
}

function malformed(endpoint: string, status: number, what: string): SidecarError {
  return new SidecarError('upstream_error', `${endpoint}: ${what}`, {
    reason: 'malformed_response',
    upstream: { endpoint, status },
  })
}
