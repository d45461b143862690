import type { ManagedIdentitySelector } from '../../config/types.ts'
import { describeSelector } from '../../config/describe-selector.ts'
import { SidecarError } from '../../core/errors.ts'
import type { ImdsV1Client } from '../../upstream/imds/v1.ts'
import type { AcquiredToken } from '../../model/token.ts'
import type { CredentialBundle } from '../../model/bundle.ts'
import type { CredentialSource, SourceTokenRequest } from '../source.ts'

/** Which managed identity, and the identity (the configured one, or the app of an FIC) it serves. */
export interface ManagedIdentityTarget {
  /** Identity name, for logs, metrics and messages. */
  name: string
  selector: ManagedIdentitySelector
}

/** A managed identity's plain Bearer tokens from IMDS v1: no certificate involved. */
export class ImdsV1Source implements CredentialSource {
  readonly label: string
  readonly canBind = false
  readonly #target: ManagedIdentityTarget
  readonly #imds: ImdsV1Client

  constructor(target: ManagedIdentityTarget, imds: ImdsV1Client) {
    this.#target = target
    this.#imds = imds
    this.label = `managed identity (IMDS v1 ${describeSelector(target.selector)})`
  }

  bindingIfKnown(): { binding: undefined } {
    return { binding: undefined }
  }

  async load(): Promise<undefined> {
    return undefined
  }

  acquireToken({
    scope,
    signal,
    clientCapabilities,
    tokenSha256ToRefresh,
  }: SourceTokenRequest): Promise<AcquiredToken> {
    // IMDS v1 takes a resource, not a scope, and no claims: what MSAL sends it for CAE is the
    // capabilities (xms_cc) and the hash of the refused token (token_sha256_to_refresh).
    return this.#imds.getToken(this.#target.selector, scope.resource, signal, {
      ...(clientCapabilities.length ? { clientCapabilities } : {}),
      ...(tokenSha256ToRefresh ? { tokenSha256ToRefresh } : {}),
    })
  }

  async bundle(): Promise<CredentialBundle> {
    throw new SidecarError(
      'no_bound_credential',
      `Identity "${this.#target.name}" uses IMDS v1 Bearer tokens and has no bound credential (set protocolScheme: MTLS_POP or useBoundCredential: true)`,
    )
  }
}
