import { isSidecarError, SidecarError } from '../../core/errors.ts'
import type { ManagedIdentityAssertion } from './managed-identity-assertion.ts'
import { federatedAssertionRequest, withClaims } from '../../upstream/entra/requests.ts'
import type { AcquiredToken } from '../../model/token.ts'
import type { BindingCertificate } from '../../model/binding.ts'
import type { CredentialBundle } from '../../model/bundle.ts'
import { appRequest, type AppContext, type CredentialSource, type SourceTokenRequest } from '../source.ts'
import { boundOrBearerFallback } from '../bearer-fallback.ts'

/**
 * `SignedAssertionFromManagedIdentity` (FIC): leg 1 is a managed identity token
 * (`ManagedIdentityAssertion`), leg 2 this app's client-credentials request with it as the client
 * assertion (upstream-protocol.md §4).
 *
 * - Bound leg 1 (IMDS v2, mtls_pop): leg 2 goes over mTLS with the leg-1 certificate as `jwt-pop`;
 *   the final token is Bearer or mtls_pop (bound to that same certificate). `load` returns the
 *   leg-1 certificate, so a new IMDS v2 certificate means new tokens.
 * - Unbound leg 1 (IMDS v1 Bearer): leg 2 is `jwt-bearer` to the regular endpoint, Bearer only.
 *   `protocolScheme: MTLS_POP` with `useBoundCredential: false` is built with a bound leg 1 anyway
 *   (`identities/create-confidential-client.ts`): a PoP token needs a certificate, and the leg-1 one is the only one.
 */
export class FederatedCredential implements CredentialSource {
  readonly label: string
  readonly canBind: boolean
  readonly #app: AppContext
  readonly #leg1: ManagedIdentityAssertion

  constructor(app: AppContext, leg1: ManagedIdentityAssertion, index: number, selectorDescription: string) {
    this.#app = app
    this.#leg1 = leg1
    this.canBind = leg1.bound
    this.label = `clientCredentials[${index}] (SignedAssertionFromManagedIdentity ${selectorDescription}${leg1.bound ? ', bound' : ''})`
  }

  async load(signal: AbortSignal): Promise<BindingCertificate | undefined> {
    return (await this.#leg1.current(signal)).binding
  }

  async acquireToken({ scope, signal, claims }: SourceTokenRequest): Promise<AcquiredToken> {
    const app = this.#app
    // Always the current bundle: the assertion's cnf must name the certificate presented with it.
    const leg1 = await this.#leg1.current(signal)
    const request = federatedAssertionRequest({
      ...appRequest(app, scope),
      ...(leg1.binding ? { tokenEndpoint: app.mtlsTokenEndpoint, binding: leg1.binding } : {}),
      allowBearerFallback: app.allowBearerFallback,
      assertion: leg1.assertion,
      tokenType: app.tokenType,
    })
    try {
      // No unbound way for leg 2 when Entra refuses binding (the leg-1 assertion is bound): only a
      // Bearer answer to an mtls_pop request is a fallback here.
      return await boundOrBearerFallback(() => app.entra.requestToken(withClaims(request, claims), signal), {
        allowed: app.allowBearerFallback,
        requested: app.tokenType,
        runtime: app.runtime,
        identity: app.identityName,
        credential: this.label,
      })
    } catch (error) {
      // Unbound: the identity has no binding to invalidate, so drop the leg-1 token here; a
      // refused assertion (expired, revoked) is then re-fetched by the next request.
      if (!leg1.binding && isSidecarError(error) && error.reason === 'invalid_client') this.#leg1.invalidate()
      throw error
    }
  }

  invalidate(binding: BindingCertificate): void {
    this.#leg1.invalidate(binding)
  }

  async bundle(signal: AbortSignal): Promise<CredentialBundle> {
    const app = this.#app
    const leg1 = await this.#leg1.current(signal)
    if (!leg1.binding) {
      throw new SidecarError(
        'no_bound_credential',
        `Identity "${app.identityName}" gets its FIC leg 1 from IMDS v1 as a Bearer token (${this.label}): no bound credential (set useBoundCredential: true)`,
      )
    }
    return {
      identity: app.identityName,
      clientId: app.clientId,
      tenantId: app.tenantId,
      tokenEndpoint: app.mtlsTokenEndpoint,
      keyProtection: leg1.binding.keyProtection,
      binding: leg1.binding,
      assertion: leg1.assertion,
      assertionExpiresOn: leg1.expiresOn,
    }
  }

  start(): void {
    this.#leg1.start()
  }

  close(): Promise<void> {
    return this.#leg1.close()
  }
}
