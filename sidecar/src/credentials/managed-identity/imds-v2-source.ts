import type { Runtime } from '../../core/runtime.ts'
import { managedIdentityMtlsRequest, withClaims } from '../../upstream/entra/requests.ts'
import type { EntraTokenClient } from '../../upstream/entra/token-client.ts'
import type { ImdsV1Client } from '../../upstream/imds/v1.ts'
import type { AcquiredToken, TokenType } from '../../model/token.ts'
import type { BindingCertificate } from '../../model/binding.ts'
import type { CredentialBundle } from '../../model/bundle.ts'
import { dropBinding } from '../binding-retry.ts'
import { boundOrBearerFallback } from '../bearer-fallback.ts'
import type { CredentialSource, SourceTokenRequest } from '../source.ts'
import type { ImdsV2BindingCredential } from './imds-v2-binding.ts'
import type { ManagedIdentityTarget } from './imds-v1-source.ts'
import { describeSelector } from '../../config/describe-selector.ts'

/** A managed identity configured for IMDS v2, or the managed identity of a bound FIC leg 1. */
export interface ImdsV2SourceOptions extends ManagedIdentityTarget {
  /** mtls_pop for protocolScheme MTLS_POP, else a Bearer token obtained with the certificate. */
  tokenType: TokenType
  allowBearerFallback: boolean
  credential: ImdsV2BindingCredential
  entra: EntraTokenClient
  imdsV1: ImdsV1Client
  runtime: Runtime
}

/**
 * A managed identity whose credential is an IMDS v2 binding certificate: tokens come from Entra's
 * mTLS endpoint with that certificate as the TLS client certificate. `protocolScheme: MTLS_POP`
 * gives mtls_pop tokens bound to it; `useBoundCredential: true` with Bearer gives Bearer tokens
 * obtained with it (the mTLS leg with no `token_type`).
 *
 * When Entra refuses bound tokens for the tenant (AADSTS3921996) and `allowBearerFallback` is on,
 * the token is a genuine Bearer token from IMDS v1 instead, as Azure.Identity for .NET retries a
 * refused bound request as a plain managed identity request; logged and counted.
 *
 * A bound FIC leg 1 is this source too: mtls_pop, no fallback (jwt-pop needs the cnf claim).
 */
export class ImdsV2Source implements CredentialSource {
  readonly label: string
  readonly canBind = true
  readonly #options: ImdsV2SourceOptions
  readonly #credential: ImdsV2BindingCredential
  readonly #entra: EntraTokenClient

  constructor(options: ImdsV2SourceOptions) {
    this.#options = options
    this.#credential = options.credential
    this.#entra = options.entra
    this.label = `managed identity (IMDS v2 ${describeSelector(options.selector)})`
  }

  bindingIfKnown(): { binding: BindingCertificate } | undefined {
    const usable = this.#credential.peek()
    return usable && { binding: usable.binding }
  }

  async load(signal: AbortSignal): Promise<BindingCertificate> {
    return (await this.#credential.current(signal)).binding
  }

  async acquireToken({
    scope,
    binding,
    signal,
    claims,
    clientCapabilities,
  }: SourceTokenRequest): Promise<AcquiredToken> {
    const options = this.#options
    // Client id and token endpoint belong to the identity, not to one certificate: take them from
    // the current binding even if `binding` was renewed meanwhile (it is still valid).
    const current = await this.#credential.current(signal)
    const request = managedIdentityMtlsRequest({
      tokenEndpoint: current.tokenEndpoint,
      clientId: current.clientId,
      scope: scope.scope,
      identityName: options.name,
      allowBearerFallback: options.allowBearerFallback,
      binding: binding ?? current.binding,
      tokenType: options.tokenType,
    })
    return boundOrBearerFallback(() => this.#entra.requestToken(withClaims(request, claims), signal), {
      allowed: options.allowBearerFallback,
      requested: options.tokenType,
      runtime: options.runtime,
      identity: options.name,
      onRefusal: {
        via: 'imds_v1',
        served: 'from IMDS v1',
        bearer: () =>
          options.imdsV1.getToken(
            options.selector,
            scope.resource,
            signal,
            clientCapabilities.length ? { clientCapabilities } : {},
          ),
      },
    })
  }

  invalidate(binding: BindingCertificate): void {
    dropBinding(binding, this.#credential, this.#entra)
  }

  async bundle(signal: AbortSignal): Promise<CredentialBundle> {
    const current = await this.#credential.current(signal)
    return {
      identity: this.#options.name,
      clientId: current.clientId,
      tenantId: current.tenantId,
      tokenEndpoint: current.tokenEndpoint,
      keyProtection: current.binding.keyProtection,
      binding: current.binding,
    }
  }

  start(): void {
    this.#credential.start()
  }

  close(): Promise<void> {
    return this.#credential.close()
  }
}
