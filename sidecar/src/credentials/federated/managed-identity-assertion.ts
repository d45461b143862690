import type { ManagedIdentitySelector } from '../../config/types.ts'
import type { Runtime } from '../../core/runtime.ts'
import {
  managedIdentityMtlsRequest,
  resourceOfScope,
  scopeForResource,
} from '../../upstream/entra/requests.ts'
import type { EntraTokenClient } from '../../upstream/entra/token-client.ts'
import type { ImdsV1Client } from '../../upstream/imds/v1.ts'
import type { BindingCertificate } from '../../model/binding.ts'
import type { ImdsV2BindingCredential } from '../managed-identity/imds-v2-binding.ts'
import { RenewingValue } from '../renewing.ts'
import { dropBinding, retryOnceWithFreshBinding } from '../binding-retry.ts'

/** FIC leg 1: a managed identity token for the token-exchange audience, the client assertion of leg 2. */
export interface FederatedAssertion {
  /** The leg-1 access token. Never logged. */
  assertion: string
  /** Epoch ms. */
  expiresOn: number
  /** Bound leg 1: the IMDS v2 certificate the assertion's `cnf` names (leg 2 presents it). */
  binding?: BindingCertificate
}

export type ManagedIdentityAssertionOptions = {
  runtime: Runtime
  /** Identity name (the app), for logs. */
  identity: string
  selector: ManagedIdentitySelector
  /** e.g. api://AzureADTokenExchange (leg 1 asks for `<tokenExchangeUrl>/.default`). */
  tokenExchangeUrl: string
} & (
  | { bound: true; binding: ImdsV2BindingCredential; entra: EntraTokenClient }
  | { bound: false; imdsV1: ImdsV1Client }
)

/**
 * The leg-1 assertion of `SignedAssertionFromManagedIdentity`, cached and renewed ahead of use
 * (`RenewingValue`: single-flight, never handed out with less than 5 minutes left, renewed at
 * half-life in the background).
 *
 * - bound: the managed identity's IMDS v2 certificate on Entra's mTLS endpoint with
 *   `token_type=mtls_pop` — the bound credential bundle (assertion + certificate). A leg 1 refused
 *   for the certificate (invalid_client, TLS failure) drops it and mints a fresh one, once.
 * - unbound: an IMDS v1 Bearer token.
 */
export class ManagedIdentityAssertion {
  readonly bound: boolean
  readonly #options: ManagedIdentityAssertionOptions
  readonly #value: RenewingValue<FederatedAssertion>

  constructor(options: ManagedIdentityAssertionOptions) {
    this.#options = options
    this.bound = options.bound
    this.#value = new RenewingValue({
      runtime: options.runtime,
      identity: options.identity,
      label: options.bound ? 'fic_leg1_bound' : 'fic_leg1',
      fetch: (signal) => this.#fetch(signal),
      // A bound assertion is only usable while the certificate its cnf names is.
      expiresOn: (value) => Math.min(value.expiresOn, value.binding?.notAfter ?? Number.POSITIVE_INFINITY),
    })
  }

  current(signal?: AbortSignal): Promise<FederatedAssertion> {
    return this.#value.current(signal)
  }

  /**
   * Leg 2 was refused: forget the assertion; with `binding`, also the IMDS v2 certificate it is
   * bound to. A binding that is not this assertion's (another credential's, or an older bundle's)
   * is ignored.
   */
  invalidate(binding?: BindingCertificate): void {
    const options = this.#options
    if (binding) {
      const current = this.#value.peek()
      if (!options.bound || (current?.binding && current.binding.x5tS256 !== binding.x5tS256)) return
    }
    this.#value.invalidate()
    // Ignored by the binding credential when it has already moved on to another certificate.
    if (options.bound && binding) dropBinding(binding, options.binding, options.entra)
  }

  start(): void {
    if (this.#options.bound) this.#options.binding.start()
  }

  close(): void {
    this.#value.close()
  }

  async #fetch(signal: AbortSignal): Promise<FederatedAssertion> {
    const options = this.#options
    const scope = scopeForResource(options.tokenExchangeUrl)
    if (!options.bound) {
      const token = await options.imdsV1.getToken(options.selector, resourceOfScope(scope), signal)
      return { assertion: token.accessToken, expiresOn: token.expiresOn }
    }
    return retryOnceWithFreshBinding({
      load: () => options.binding.current(signal),
      bindingOf: (current) => current.binding,
      attempt: async (current) => {
        const token = await options.entra.requestToken(
          managedIdentityMtlsRequest({
            tokenEndpoint: current.tokenEndpoint,
            clientId: current.clientId,
            scope,
            identityName: options.identity,
            binding: current.binding,
            // jwt-pop needs the cnf claim: no Bearer fallback on leg 1.
            tokenType: 'mtls_pop',
          }),
          signal,
        )
        return { assertion: token.accessToken, expiresOn: token.expiresOn, binding: current.binding }
      },
      rejected: (binding, error) => {
        options.runtime.logger.warn(
          { identity: options.identity, 'x5t#S256': binding.x5tS256, reason: error.reason },
          'FIC leg 1: Entra refused the IMDS v2 certificate; minting a fresh one and retrying once',
        )
        dropBinding(binding, options.binding, options.entra)
      },
    })
  }
}
