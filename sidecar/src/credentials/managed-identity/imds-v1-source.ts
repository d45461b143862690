import type { ManagedIdentityConfig } from '../../config/types.ts'
import { SidecarError } from '../../core/errors.ts'
import { resourceOfScope } from '../../upstream/entra/requests.ts'
import type { ImdsV1Client } from '../../upstream/imds/v1.ts'
import type { AcquiredToken } from '../../model/token.ts'
import type { CredentialBundle } from '../../model/bundle.ts'
import type { CredentialSource, SourceTokenRequest } from '../source.ts'

/** A managed identity's plain Bearer tokens from IMDS v1: no certificate involved. */
export class ImdsV1Source implements CredentialSource {
  readonly label: string
  readonly canBind = false
  readonly #config: ManagedIdentityConfig
  readonly #imds: ImdsV1Client

  constructor(config: ManagedIdentityConfig, imds: ImdsV1Client) {
    this.#config = config
    this.#imds = imds
    this.label = `managed identity (IMDS v1 ${describeSelector(config)})`
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
    return this.#imds.getToken(this.#config.selector, resourceOfScope(scope), signal, {
      ...(clientCapabilities.length ? { clientCapabilities } : {}),
      ...(tokenSha256ToRefresh ? { tokenSha256ToRefresh } : {}),
    })
  }

  async bundle(): Promise<CredentialBundle> {
    throw new SidecarError(
      'no_bound_credential',
      `Identity "${this.#config.name}" uses IMDS v1 Bearer tokens and has no bound credential (set protocolScheme: MTLS_POP or useBoundCredential: true)`,
    )
  }
}

/** `system-assigned`, or `clientId <id>` and the like: which managed identity, for labels. */
export function describeSelector(config: ManagedIdentityConfig): string {
  const { selector } = config
  return selector.kind === 'system' ? 'system-assigned' : `${selector.kind} ${selector.value}`
}
