import { SidecarError } from '../core/errors.ts'
import { clientSecretRequest, withClaims } from '../upstream/entra/requests.ts'
import type { AcquiredToken } from '../model/token.ts'
import type { BindingCertificate } from '../model/binding.ts'
import type { CredentialBundle } from '../model/bundle.ts'
import type { AppContext, CredentialSource, SourceRequestOptions } from './source.ts'

/** `ClientSecret`: always loads; Bearer only, regular endpoint. The secret is never logged. */
export class ClientSecretCredential implements CredentialSource {
  readonly label: string
  readonly canBind = false
  readonly #app: AppContext
  readonly #secret: string

  constructor(app: AppContext, secret: string, index: number) {
    this.#app = app
    this.#secret = secret
    this.label = `clientCredentials[${index}] (ClientSecret)`
  }

  async load(): Promise<undefined> {
    return undefined
  }

  acquireToken(
    scope: string,
    _binding: BindingCertificate | undefined,
    signal: AbortSignal,
    options: SourceRequestOptions,
  ): Promise<AcquiredToken> {
    const app = this.#app
    return app.entra.requestToken(
      withClaims(
        clientSecretRequest({
          tokenEndpoint: app.tokenEndpoint,
          clientId: app.clientId,
          scope,
          identityName: app.identityName,
          clientSecret: this.#secret,
        }),
        options.claims,
      ),
      signal,
    )
  }

  invalidate(): void {}

  async bundle(): Promise<CredentialBundle> {
    throw new SidecarError(
      'no_bound_credential',
      `Identity "${this.#app.identityName}" authenticates with a client secret (${this.label}), which has no certificate to bind`,
    )
  }

  start(): void {}

  async close(): Promise<void> {}
}
