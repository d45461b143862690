import { SidecarError } from '../core/errors.ts'
import { clientSecretRequest, withClaims } from '../upstream/entra/requests.ts'
import type { AcquiredToken } from '../model/token.ts'
import type { CredentialBundle } from '../model/bundle.ts'
import { appRequest, type AppContext, type CredentialSource, type SourceTokenRequest } from './source.ts'

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

  acquireToken({ scope, signal, claims }: SourceTokenRequest): Promise<AcquiredToken> {
    const request = clientSecretRequest({ ...appRequest(this.#app, scope), clientSecret: this.#secret })
    return this.#app.entra.requestToken(withClaims(request, claims), signal)
  }

  async bundle(): Promise<CredentialBundle> {
    throw new SidecarError(
      'no_bound_credential',
      `Identity "${this.#app.identityName}" authenticates with a client secret (${this.label}), which has no certificate to bind`,
    )
  }
}
