import type { ConfidentialClientConfig } from '../config/types.ts'
import { mergeClaimsAndCapabilities, unionCapabilities, type AcquireOptions } from '../model/claims.ts'
import type { AcquiredToken, TokenType } from '../model/token.ts'
import type { BindingCertificate } from '../model/binding.ts'
import type { ClientCredential } from '../credentials/source.ts'
import { CredentialChain } from './chain.ts'
import type { Identity } from './identity.ts'
import type { CredentialBundle } from '../model/bundle.ts'

/**
 * A confidential client (app registration): tokens from Entra with the first credential of
 * `clientCredentials` that loads (`CredentialChain`). Each credential source knows its own request
 * shape — certificate (private_key_jwt or presented over mTLS), FIC from a managed identity (bound
 * or not), projected token file, client secret — so this class only routes.
 *
 * The binding it reports is the certificate the credential presents or signs with (the app
 * certificate, or the FIC leg-1 IMDS v2 certificate); it is part of the token cache key, so a new
 * certificate means new tokens, and a rejected one is dropped and re-loaded by the token service.
 */
export class ConfidentialClient implements Identity {
  readonly name: string
  readonly config: ConfidentialClientConfig
  readonly tokenType: TokenType
  readonly #chain: CredentialChain

  constructor(config: ConfidentialClientConfig, chain: CredentialChain) {
    this.name = config.name
    this.config = config
    this.tokenType = config.protocolScheme === 'MTLS_POP' ? 'mtls_pop' : 'Bearer'
    this.#chain = chain
  }

  /** The chain may re-read files to choose its credential: only `currentBinding` can tell. */
  bindingIfKnown(): undefined {
    return undefined
  }

  async currentBinding(signal: AbortSignal): Promise<BindingCertificate | undefined> {
    return (await this.#chain.select(signal)).binding
  }

  /**
   * With the credential selected now. `binding` (the cache key's) may be a moment old; the
   * credential uses its current state so that what it presents is always self-consistent (an FIC
   * assertion with the certificate its cnf names), and the token carries what was really used.
   */
  async acquireToken(
    scope: string,
    _binding: BindingCertificate | undefined,
    signal: AbortSignal,
    options: AcquireOptions = {},
  ): Promise<AcquiredToken> {
    const { credential } = await this.#chain.select(signal)
    const claims = mergeClaimsAndCapabilities(
      options.claims,
      unionCapabilities(this.config.clientCapabilities, options.clientCapabilities),
    )
    return credential.acquireToken(scope, signal, claims === undefined ? {} : { claims })
  }

  invalidateBinding(binding: BindingCertificate): void {
    for (const credential of this.#chain.credentials) credential.invalidate(binding)
  }

  async credentialBundle(signal: AbortSignal): Promise<CredentialBundle> {
    const { credential } = await this.#chain.select(signal)
    return credential.bundle(signal)
  }

  start(): void {
    for (const credential of this.#chain.credentials) credential.start()
  }

  async close(): Promise<void> {
    this.#chain.close()
    await Promise.all(this.#chain.credentials.map((credential: ClientCredential) => credential.close()))
  }
}
