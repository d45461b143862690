import { randomUUID } from 'node:crypto'
import type { ManagedIdentitySelector } from '../../config/types.ts'
import { SidecarError } from '../../core/errors.ts'
import { callUpstream } from '../client.ts'
import { describeEndpoint, parseJsonObject, type HttpResponse } from '../http.ts'
import { imdsRetryPolicy } from '../retry.ts'
import type { Runtime } from '../../core/runtime.ts'
import { tokenLifetime } from '../../model/lifetime.ts'
import type { AcquiredToken } from '../../model/token.ts'
import { imdsFailure } from './errors.ts'
import { imdsSelectorParam } from './selector.ts'

const apiVersion = '2018-02-01'

/**
 * IMDS v1: Bearer tokens for the VM's managed identities
 * (MSAL.NET ManagedIdentity/ImdsManagedIdentitySource.cs).
 */
export class ImdsV1Client {
  readonly #runtime: Runtime
  readonly #endpoint: string

  constructor(options: { runtime: Runtime; imdsEndpoint: string }) {
    this.#runtime = options.runtime
    this.#endpoint = options.imdsEndpoint.replace(/\/+$/, '')
  }

  async getToken(
    selector: ManagedIdentitySelector,
    resource: string,
    signal: AbortSignal,
    cae: { clientCapabilities?: string[]; tokenSha256ToRefresh?: string } = {},
  ): Promise<AcquiredToken> {
    const url = new URL(`${this.#endpoint}/metadata/identity/oauth2/token`)
    url.searchParams.set('api-version', apiVersion)
    url.searchParams.set('resource', resource)
    const param = imdsSelectorParam(selector, 'msi_res_id')
    if (param) url.searchParams.set(param[0], param[1])
    // The two MSI v1 CAE parameters (MSAL.NET docs/msiv1_token_revocation.md; msal-node 7.2
    // BaseManagedIdentitySource sends xms_cc to every managed identity source): capabilities as
    // msal-node joins them, and the hash of the refused token so the endpoint skips its own cache.
    if (cae.clientCapabilities?.length) url.searchParams.set('xms_cc', cae.clientCapabilities.join(','))
    if (cae.tokenSha256ToRefresh) url.searchParams.set('token_sha256_to_refresh', cae.tokenSha256ToRefresh)
    const endpoint = describeEndpoint(url)
    const { clock, logger } = this.#runtime

    const res = await callUpstream(this.#runtime, {
      metricsEndpoint: 'imds.token',
      // A new request id per attempt: each is a separate call in IMDS's logs.
      request: () => ({
        method: 'GET',
        url,
        headers: { Metadata: 'true', 'x-ms-client-request-id': randomUUID() },
      }),
      policy: imdsRetryPolicy(),
      signal,
      logRetry: ({ retry, delayMs, failure }) =>
        logger.info(
          {
            endpoint,
            retry,
            delay_ms: delayMs,
            failure: failure.kind === 'status' ? failure.status : failure.reason,
          },
          'retrying IMDS',
        ),
      errorFor: (res) => (res.status === 200 ? undefined : imdsFailure(res, endpoint, clock.now())),
    })
    return parseTokenResponse(res, endpoint, clock.now())
  }
}

function parseTokenResponse(res: HttpResponse, endpoint: string, now: number): AcquiredToken {
  const body = parseJsonObject(res, endpoint)
  const malformed = (what: string) =>
    new SidecarError('upstream_error', `${endpoint} answered 200 ${what}`, {
      reason: 'malformed_response',
      upstream: { endpoint, status: res.status },
    })
  // A 200 that carries an error is not a token, whatever else it holds.
  if (body['error'] !== undefined && body['error'] !== null && body['error'] !== '')
    throw malformed('with an error field')
  const accessToken = body['access_token']
  if (typeof accessToken !== 'string' || accessToken === '') throw malformed('without an access_token')
  const rawType = body['token_type']
  if (rawType !== undefined && typeof rawType !== 'string')
    throw malformed('with a token_type that is not a string')
  const tokenType = rawType === undefined || rawType === '' ? 'Bearer' : rawType
  if (tokenType.toLowerCase() !== 'bearer') {
    throw new SidecarError(
      'upstream_error',
      `${endpoint} answered token_type "${tokenType.slice(0, 32)}" where Bearer was expected`,
      {
        reason: 'token_type_mismatch',
        upstream: { endpoint, status: res.status },
      },
    )
  }
  const lifetime = tokenLifetime({
    accessToken,
    expiresIn: body['expires_in'],
    expiresOn: body['expires_on'],
    refreshIn: body['refresh_in'],
    now,
    endpoint,
    status: res.status,
  })
  return { tokenType: 'Bearer', accessToken, ...lifetime }
}
