import { untilAborted } from '../core/abort.ts'
import { isSidecarError, SidecarError, describeError } from '../core/errors.ts'
import type { BindingCertificate } from '../model/binding.ts'
import type { AppContext, ClientCredential } from '../credentials/source.ts'

export interface Selected {
  credential: ClientCredential
  binding: BindingCertificate | undefined
}

/**
 * `clientCredentials` in order, as Microsoft.Identity.Web's DefaultCredentialsLoader: the first
 * credential that loads is used, and every one that does not is logged with its reason. Once one
 * is chosen it is kept; when it stops loading (certificate file deleted, leg 1 failing) the next
 * acquisition walks the chain again from the top. An identity served as mtls_pop skips credentials
 * that cannot present a certificate.
 */
export class CredentialChain {
  readonly #app: AppContext
  readonly #credentials: readonly ClientCredential[]
  readonly #closing = new AbortController()
  #chosen: ClientCredential | undefined
  #selecting: Promise<Selected> | undefined

  constructor(app: AppContext, credentials: readonly ClientCredential[]) {
    this.#app = app
    this.#credentials = credentials
  }

  get credentials(): readonly ClientCredential[] {
    return this.#credentials
  }

  /** The credential to use now, loaded. */
  async select(signal: AbortSignal): Promise<Selected> {
    const chosen = this.#chosen
    if (chosen) {
      try {
        return { credential: chosen, binding: await chosen.load(signal) }
      } catch (error) {
        if (signal.aborted) throw error
        if (this.#chosen === chosen) {
          this.#chosen = undefined
          this.#logFailure(
            chosen,
            error,
            'the client credential in use no longer loads; walking the chain again',
          )
        }
      }
    }
    this.#selecting ??= this.#walk().finally(() => {
      this.#selecting = undefined
    })
    return untilAborted(this.#selecting, signal)
  }

  close(): void {
    this.#closing.abort(new SidecarError('shutting_down', 'The sidecar is shutting down'))
  }

  async #walk(): Promise<Selected> {
    const signal = this.#closing.signal
    const failures: { credential: ClientCredential; error: unknown }[] = []
    for (const credential of this.#credentials) {
      if (this.#app.tokenType === 'mtls_pop' && !credential.canBind) {
        const error = new SidecarError(
          'internal_error',
          `${credential.label}: has no certificate, so it cannot give mtls_pop tokens`,
          {
            reason: 'credential_unavailable',
          },
        )
        failures.push({ credential, error })
        this.#logFailure(credential, error, 'skipping a client credential')
        continue
      }
      try {
        const binding = await credential.load(signal)
        this.#chosen = credential
        this.#app.runtime.logger.info(
          {
            identity: this.#app.identityName,
            credential: credential.label,
            ...(binding ? { 'x5t#S256': binding.x5tS256 } : {}),
            skipped: failures.length,
          },
          'using client credential',
        )
        return { credential, binding }
      } catch (error) {
        if (signal.aborted) throw error
        failures.push({ credential, error })
        this.#logFailure(credential, error, 'client credential did not load; trying the next one')
      }
    }
    throw this.#exhausted(failures)
  }

  #logFailure(credential: ClientCredential, error: unknown, message: string): void {
    this.#app.runtime.logger.warn(
      { identity: this.#app.identityName, credential: credential.label, reason: describeError(error) },
      message,
    )
  }

  /**
   * One credential: its own error (e.g. leg 1's upstream answer, with AADSTS codes). Several: a
   * summary; 503 when any failure was transient (IMDS or Entra unavailable), so callers retry.
   */
  #exhausted(failures: { credential: ClientCredential; error: unknown }[]): SidecarError {
    const only = failures.length === 1 ? failures[0]?.error : undefined
    if (isSidecarError(only)) return only
    const summary = failures
      .map(({ credential, error }) => `${credential.label}: ${reasonOf(error, credential.label)}`)
      .join('; ')
    const message = `No client credential of identity "${this.#app.identityName}" loaded — ${summary}`
    const transient = failures.map((f) => f.error).find((e) => isSidecarError(e) && e.status === 503) as
      SidecarError | undefined
    if (transient) {
      return new SidecarError('upstream_unavailable', message, {
        reason: 'credential_unavailable',
        retryAfterSeconds: transient.retryAfterSeconds ?? 5,
      })
    }
    return new SidecarError('internal_error', message, { reason: 'credential_unavailable' })
  }
}

/** The failure's message without a repeated label. */
function reasonOf(error: unknown, label: string): string {
  const message = isSidecarError(error) ? error.message : describeError(error)
  return message.startsWith(`${label}: `) ? message.slice(label.length + 2) : message
}
