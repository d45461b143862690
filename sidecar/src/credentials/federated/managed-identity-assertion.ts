import type { Runtime } from '../../core/runtime.ts'
import type { Scope } from '../../model/scope.ts'
import type { BindingCertificate } from '../../model/binding.ts'
import { RenewingValue } from '../renewing.ts'
import { retryOnceWithFreshBinding } from '../binding-retry.ts'
import type { CredentialSource } from '../source.ts'

/** FIC leg 1: a managed identity token for the token-exchange audience, the client assertion of leg 2. */
export interface FederatedAssertion {
  /** The leg-1 access token. Never logged. */
  assertion: string
  /** Epoch ms. */
  expiresOn: number
  /** Bound leg 1: the IMDS v2 certificate the assertion's `cnf` names (leg 2 presents it). */
  binding?: BindingCertificate
}

export interface ManagedIdentityAssertionOptions {
  runtime: Runtime
  /** Identity name (the app), for logs. */
  identity: string
  /**
   * The managed identity leg 1 asks: IMDS v2 (bound: mtls_pop, no Bearer fallback, since jwt-pop
   * needs the cnf claim) or IMDS v1 (a Bearer token).
   */
  managedIdentity: CredentialSource
  /** e.g. api://AzureADTokenExchange (leg 1 asks for `<tokenExchangeUrl>/.default`). */
  tokenExchangeUrl: string
}

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
    this.bound = options.managedIdentity.canBind
    this.#value = new RenewingValue({
      runtime: options.runtime,
      identity: options.identity,
      label: this.bound ? 'fic_leg1_bound' : 'fic_leg1',
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
    if (binding) {
      const current = this.#value.peek()
      if (!this.bound || (current?.binding && current.binding.x5tS256 !== binding.x5tS256)) return
    }
    this.#value.invalidate()
    // Ignored by the binding credential when it has already moved on to another certificate.
    if (binding) this.#options.managedIdentity.invalidate?.(binding)
  }

  start(): void {
    this.#options.managedIdentity.start?.()
  }

  /**
   * Stops renewal and waits for a fetch under way (the close aborts it). The managed identity's
   * binding credential is shared, and closed with the identities.
   */
  close(): Promise<void> {
    return this.#value.close()
  }

  #fetch(signal: AbortSignal): Promise<FederatedAssertion> {
    const { managedIdentity, runtime, identity } = this.#options
    // The daemon's own audience (config), not caller input: both spellings made here, as Entra
    // takes the exchange URL (trailing `/` trimmed, as MSAL.NET does).
    const resource = this.#options.tokenExchangeUrl.trim().replace(/\/+$/, '')
    const scope: Scope = { resource, scope: `${resource}/.default` }
    return retryOnceWithFreshBinding({
      load: async () => ({ binding: await managedIdentity.load(signal) }),
      attempt: async ({ binding }) => {
        const token = await managedIdentity.acquireToken({ scope, binding, signal, clientCapabilities: [] })
        return { assertion: token.accessToken, expiresOn: token.expiresOn, ...(binding ? { binding } : {}) }
      },
      rejected: (binding, error) => {
        runtime.logger.warn(
          { identity, 'x5t#S256': binding.x5tS256, reason: error.reason },
          'FIC leg 1: Entra refused the IMDS v2 certificate; minting a fresh one and retrying once',
        )
        managedIdentity.invalidate?.(binding)
      },
    })
  }
}
