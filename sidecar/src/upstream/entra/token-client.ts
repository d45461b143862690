import { tokenLifetime } from '../../model/lifetime.ts'
import { randomUUID } from 'node:crypto'
import { SidecarError, type ErrorReason, type UpstreamErrorDetail } from '../../core/errors.ts'
import { callUpstream } from '../client.ts'
import { retryAfterSecondsFor } from '../../core/retry-after.ts'
import { upstreamErrorDetail } from '../error-detail.ts'
import { describeEndpoint, parseJsonObject, parseRetryAfterMs, type HttpResponse } from '../http.ts'
import { entraRetryPolicy } from '../retry.ts'
import type { Runtime } from '../../core/runtime.ts'
import type { AcquiredToken, TokenType } from '../../model/token.ts'
import type { BindingCertificate } from '../../model/binding.ts'
import { MtlsAgents } from '../tls.ts'
import { bindingNotAllowedCode, entraConfigurationProblem } from './configuration-errors.ts'

/** One token request to an Entra token endpoint; `upstream/entra/requests.ts` builds these. */
export interface EntraTokenRequest {
  tokenEndpoint: string
  /** Form body. May hold a client assertion or secret: never logged, never put into an error. */
  form: Record<string, string>
  /** Presented as the TLS client certificate (mTLS endpoint); the token is bound to it for mtls_pop. */
  clientCertificate?: BindingCertificate
  /** What the caller will be served; an mtls_pop request answered with Bearer fails closed. */
  expectedTokenType: TokenType
  /** Accept a Bearer answer to mtls_pop (credentials/bearer-fallback.ts logs and counts it). */
  allowBearerFallback?: boolean
  /** For logs and metrics. */
  identityName: string
  /** Metrics label, e.g. `entra.token` or `entra.mtls.token`. */
  metricsEndpoint: string
}

export interface EntraTokenClientOptions {
  runtime: Runtime
  /** The daemon's mTLS agent cache, shared with the downstream proxy (and closed by the daemon); one is created otherwise. */
  agents?: MtlsAgents
}

/**
 * Error codes Entra returns as `invalid_request` although the problem is the client's credential,
 * not the request (e.g. a federated assertion that matches no FIC record). They mean the same as
 * `invalid_client` to us: refresh the credential, do not blame the caller.
 */
const credentialErrorCodes = new Set([
  70021, // no matching federated identity record found for presented assertion
  700016, // application not found in the directory
  700024, // client assertion is not within its valid time range
  700027, // client assertion failed signature validation / certificate not registered
  700211, // no matching federated identity record for presented assertion issuer
  700212, // no matching federated identity record for presented assertion audience
  700213, // no matching federated identity record for presented assertion subject
  7000215, // invalid client secret
  7000222, // client secret expired
])

/** `error` values that say the caller's request is wrong (contract §3: answered 400 with upstream's error). */
const badRequestErrors = new Set(['invalid_scope', 'invalid_resource', 'invalid_request'])

/**
 * Posts token requests to Entra's token endpoints (regular and mTLS) and turns the answers into
 * `AcquiredToken`s or `SidecarError`s. Never follows redirects. Retries 5xx once (entraRetryPolicy);
 * the "binding rejected → re-mint once" retry belongs to the identity (`Identity.token`), which sees
 * `reason: 'invalid_client'` or `reason: 'tls_failure'` on the error.
 *
 * @example
 * const client = new EntraTokenClient({ runtime })
 * const token = await client.requestToken(managedIdentityMtlsRequest({ ... }), signal)
 */
export class EntraTokenClient {
  readonly #runtime: Runtime
  readonly #agents: MtlsAgents
  readonly #ownsAgents: boolean

  constructor(options: EntraTokenClientOptions) {
    this.#runtime = options.runtime
    this.#agents = options.agents ?? new MtlsAgents({ extraCaPem: options.runtime.extraCaPem })
    this.#ownsAgents = options.agents === undefined
  }

  async requestToken(req: EntraTokenRequest, signal: AbortSignal): Promise<AcquiredToken> {
    const { logger } = this.#runtime
    const endpoint = describeEndpoint(req.tokenEndpoint)
    const body = new URLSearchParams(req.form).toString()
    let res: HttpResponse
    try {
      res = await callUpstream(this.#runtime, {
        metricsEndpoint: req.metricsEndpoint,
        request: () => ({
          method: 'POST',
          url: req.tokenEndpoint,
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            accept: 'application/json',
            // A new id per attempt, echoed back (return-client-request-id) into the error detail.
            'client-request-id': randomUUID(),
            'return-client-request-id': 'true',
            'x-client-sku': 'credential-sidecar',
            'x-client-os': process.platform,
          },
          body,
        }),
        policy: entraRetryPolicy(),
        dispatcher: req.clientCertificate
          ? await this.#agents.get(req.clientCertificate, { tls12: true })
          : await this.#runtime.dispatcher.get(),
        signal,
        logRetry: ({ retry, delayMs, failure }) =>
          logger.warn(
            { identity: req.identityName, endpoint, retry, delayMs, failure },
            'retrying Entra token request',
          ),
        errorFor: (res) =>
          res.status >= 400 ? this.#errorFor(res, endpoint, req.identityName, secretsOf(req)) : undefined,
      })
    } catch (error) {
      // A certificate the server refused in the handshake should not keep its pooled connections.
      if (req.clientCertificate && (error as { reason?: ErrorReason }).reason === 'tls_failure') {
        this.#agents.evict(req.clientCertificate.x5tS256)
      }
      throw error
    }
    return this.#tokenFrom(res, req, endpoint)
  }

  /** Forgets the pooled connections for a certificate that was rejected or replaced. */
  evictBinding(x5tS256: string): void {
    this.#agents.evict(x5tS256)
  }

  async close(): Promise<void> {
    if (this.#ownsAgents) await this.#agents.close()
  }

  #tokenFrom(res: HttpResponse, req: EntraTokenRequest, endpoint: string): AcquiredToken {
    const json = parseJsonObject(res, endpoint)
    const malformed = (what: string) =>
      new SidecarError('upstream_error', `${endpoint} answered ${res.status} with ${what}`, {
        reason: 'malformed_response',
        upstream: { endpoint, status: res.status },
      })
    if (json['error'] !== undefined && json['error'] !== null && json['error'] !== '')
      throw malformed('an error field')
    const accessToken = json['access_token']
    if (typeof accessToken !== 'string' || accessToken === '') throw malformed('no access_token')
    // MSAL treats a success without token_type as an error (upstream-protocol.md §7), not as Bearer.
    const rawType = json['token_type']
    if (rawType === undefined || rawType === null || rawType === '') throw malformed('no token_type')
    if (typeof rawType !== 'string') throw malformed('a token_type that is not a string')
    const answered = parseTokenType(rawType)

    let tokenType: TokenType
    if (answered === req.expectedTokenType) {
      tokenType = answered
    } else if (answered === 'Bearer' && req.expectedTokenType === 'mtls_pop' && req.allowBearerFallback) {
      // Accepted only; credentials/bearer-fallback.ts logs and counts it (the one place).
      tokenType = 'Bearer'
    } else {
      // Fail closed (MSAL: token_type_mismatch): a Bearer token must never be served as PoP, and a
      // PoP token is useless to a caller who will send it as Bearer.
      throw new SidecarError(
        'upstream_error',
        `${endpoint} answered token_type '${rawType.slice(0, 32)}' where ${req.expectedTokenType} was requested`,
        { reason: 'token_type_mismatch', upstream: { endpoint, status: res.status } },
      )
    }

    // A PoP token is useless once its certificate has expired (the TLS handshake fails): it is never
    // kept past the certificate's notAfter, nor past its own exp.
    const token: AcquiredToken = {
      tokenType,
      accessToken,
      ...tokenLifetime({
        accessToken,
        expiresIn: json['expires_in'],
        expiresOn: json['expires_on'],
        refreshIn: json['refresh_in'],
        ...(tokenType === 'mtls_pop' && req.clientCertificate
          ? { notAfter: req.clientCertificate.notAfter }
          : {}),
        now: this.#runtime.clock.now(),
        endpoint,
        status: res.status,
      }),
    }
    // Also for a Bearer token obtained over mTLS: it was minted for this certificate (model/token.ts).
    if (req.clientCertificate) token.binding = req.clientCertificate
    return token
  }

  #errorFor(res: HttpResponse, endpoint: string, identity: string, secrets: string[]): SidecarError {
    const status = res.status
    const retryAfterMs = parseRetryAfterMs(res.headers['retry-after'], this.#runtime.clock.now())
    const retryAfterSeconds = retryAfterMs === undefined ? undefined : retryAfterSecondsFor(retryAfterMs)
    const upstream = upstreamErrorDetail(res, endpoint, secrets)
    const what = describeUpstreamError(upstream)

    if (status === 429 || status >= 500) {
      return new SidecarError('upstream_unavailable', `${endpoint} answered ${status}${what}`, {
        reason: status === 429 ? 'throttled' : 'server_error',
        upstream,
        ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
      })
    }
    // Before the invalid_client check: re-minting the certificate does not fix an Entra setting.
    const problem = entraConfigurationProblem(upstream.errorCodes, identity)
    if (problem) {
      return new SidecarError(
        'upstream_error',
        `${endpoint} refused with AADSTS${problem.code}: ${problem.advice}${what}`,
        {
          reason: problem.code === bindingNotAllowedCode ? 'binding_not_allowed' : 'entra_configuration',
          upstream,
        },
      )
    }
    if (!upstream.error) {
      return new SidecarError('upstream_error', `${endpoint} answered ${status} without an OAuth error`, {
        reason: 'malformed_response',
        upstream,
      })
    }
    const error = upstream.error
    const aboutCredential = upstream.errorCodes?.some((c) => credentialErrorCodes.has(c)) ?? false
    if (
      error === 'invalid_client' ||
      error === 'unauthorized_client' ||
      (error === 'invalid_request' && aboutCredential)
    ) {
      return new SidecarError('upstream_error', `${endpoint} refused the client credential${what}`, {
        reason: 'invalid_client',
        upstream,
      })
    }
    if (badRequestErrors.has(error)) {
      return new SidecarError('upstream_bad_request', `${endpoint} refused the request${what}`, { upstream })
    }
    return new SidecarError('upstream_error', `${endpoint} answered ${status}${what}`, { upstream })
  }
}

function parseTokenType(value: string): TokenType | string {
  const lower = value.trim().toLowerCase()
  if (lower === 'bearer') return 'Bearer'
  if (lower === 'mtls_pop') return 'mtls_pop'
  return value
}

/** What a request carries that upstream must not echo back to a caller or a log. */
const secretFields = ['client_secret', 'client_assertion']

function secretsOf(req: EntraTokenRequest): string[] {
  return secretFields.flatMap((field) => {
    const value = req.form[field]
    return value ? [value] : []
  })
}

function describeUpstreamError(detail: UpstreamErrorDetail): string {
  if (!detail.error) return ''
  return `: ${detail.error}${detail.errorDescription ? ` (${detail.errorDescription})` : ''}`
}
