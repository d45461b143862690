import { SidecarError } from '../core/errors.ts'
import { WatchedFile } from '../core/watched-file.ts'
import { trustedFile } from '../core/trusted-file.ts'
import { credentialFileKey, credentialFileProblem, requireCredentialFile } from './credential-file.ts'
import { federatedAssertionRequest, withClaims } from '../upstream/entra/requests.ts'
import type { AcquiredToken } from '../model/token.ts'
import type { CredentialBundle } from '../model/bundle.ts'
import { appRequest, type AppContext, type CredentialSource, type SourceTokenRequest } from './source.ts'

/**
 * `SignedAssertionFilePath` (Kubernetes workload identity): the projected service account token is
 * the client assertion, `jwt-bearer` to the regular endpoint, Bearer only. The file is checked on
 * every use (a stat; read again when it changed), never trusted from an earlier check: kubelet
 * rotates it at 80 % of its life, and a stale copy fails with AADSTS700024 (upstream-protocol.md §4).
 */
export class AssertionFileCredential implements CredentialSource {
  readonly label: string
  readonly canBind = false
  readonly #app: AppContext
  readonly #file: WatchedFile<string>
  readonly #key: string

  /** The file must be there and trusted at start (else the daemon does not start). */
  constructor(app: AppContext, path: string, index: number) {
    this.#app = app
    this.label = `clientCredentials[${index}] (SignedAssertionFilePath ${path})`
    this.#key = credentialFileKey(app.identityName, index, 'signedAssertionFileDiskPath')
    requireCredentialFile(path, this.#key)
    this.#file = new WatchedFile({
      path,
      clock: app.runtime.clock,
      checkIntervalMs: 0,
      // Contract §2: an owned regular file, not writable by group or others; checked on every read.
      check: trustedFile,
      parse: (bytes) => {
        const text = bytes.toString('utf8').trim()
        if (!text) throw new SidecarError('credential_unavailable', `${this.label}: file is empty`)
        return text
      },
    })
  }

  async load(): Promise<undefined> {
    await this.#read()
    return undefined
  }

  async acquireToken({ scope, signal, claims }: SourceTokenRequest): Promise<AcquiredToken> {
    const assertion = await this.#read()
    const request = federatedAssertionRequest({
      ...appRequest(this.#app, scope),
      assertion,
      tokenType: 'Bearer',
    })
    return this.#app.entra.requestToken(withClaims(request, claims), signal)
  }

  async bundle(): Promise<CredentialBundle> {
    throw new SidecarError(
      'no_bound_credential',
      `Identity "${this.#app.identityName}" authenticates with a projected token file (${this.label}), which has no certificate to bind`,
    )
  }

  async #read(): Promise<string> {
    try {
      return (await this.#file.check()).value
    } catch (error) {
      if (error instanceof SidecarError) throw error
      throw new SidecarError(
        'credential_unavailable',
        `${this.label}: ${credentialFileProblem(this.#key, this.#file.path, error)}`,
      )
    }
  }
}
