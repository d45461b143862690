import type { ManagedIdentityConfig } from '../config/types.ts'
import { SidecarError } from '../core/errors.ts'
import { resourceOfScope } from '../upstream/entra/requests.ts'
import type { ImdsV1Client } from '../upstream/imds/v1.ts'
import { unionCapabilities, type AcquireOptions } from '../model/claims.ts'
import type { AcquiredToken } from '../model/token.ts'
import type { Identity } from './identity.ts'
import type { CredentialBundle } from '../model/bundle.ts'

/** A managed identity's plain Bearer tokens from IMDS v1: no certificate involved. */
export class ManagedIdentityBearer implements Identity {
  readonly name: string
  readonly config: ManagedIdentityConfig
  readonly tokenType = 'Bearer' as const
  readonly #imds: ImdsV1Client

  constructor(config: ManagedIdentityConfig, imds: ImdsV1Client) {
    this.name = config.name
    this.config = config
    this.#imds = imds
  }

  bindingIfKnown(): { binding: undefined } {
    return { binding: undefined }
  }

  async currentBinding(): Promise<undefined> {
    return undefined
  }

  acquireToken(
    scope: string,
    _binding: undefined,
    signal: AbortSignal,
    options: AcquireOptions = {},
  ): Promise<AcquiredToken> {
    // IMDS v1 takes a resource, not a scope, and no claims: what MSAL sends it for CAE is the
    // capabilities (xms_cc) and the hash of the refused token (token_sha256_to_refresh).
    const capabilities = unionCapabilities(this.config.clientCapabilities, options.clientCapabilities)
    return this.#imds.getToken(this.config.selector, resourceOfScope(scope), signal, {
      ...(capabilities.length ? { clientCapabilities: capabilities } : {}),
      ...(options.tokenSha256ToRefresh ? { tokenSha256ToRefresh: options.tokenSha256ToRefresh } : {}),
    })
  }

  invalidateBinding(): void {}

  async credentialBundle(): Promise<CredentialBundle> {
    throw new SidecarError(
      'no_bound_credential',
      `Identity "${this.name}" uses IMDS v1 Bearer tokens and has no bound credential (set protocolScheme: MTLS_POP or useBoundCredential: true)`,
    )
  }

  start(): void {}

  async close(): Promise<void> {}
}
