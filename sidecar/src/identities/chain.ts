import { untilAborted } from '../core/abort.ts'
import { isSidecarError, SidecarError, describeError } from '../core/errors.ts'
import type { BindingCertificate } from '../model/binding.ts'
import type { AppContext, CredentialSource } from '../credentials/source.ts'

export interface Selected {
  credential: CredentialSource
  binding: BindingCertificate | undefined
}

/** The identity a first-that-loads chain belongs to: for its logs and the mtls_pop filter. */
export type ChainContext = Pick<AppContext, 'identityName' | 'tokenType' | 'runtime'>

/**
 * An identity's credential sources, in order. A managed identity is a chain of one, used as is
 * (`CredentialChain.of`): there is nothing to choose, and its source's errors are the identity's.
 *
 * A confidential client's is `clientCredentials` in order (`CredentialChain.firstThatLoads`), as
 * Microsoft.Identity.Web's DefaultCredentialsLoader: the first credential that loads is used, and
 * every one that does not is logged with its reason. Once one is chosen it is kept; when it stops
 * loading (certificate file deleted, leg 1 failing) the next acquisition walks the chain again from
 * the top. An identity served as mtls_pop skips credentials that cannot present a certificate.
 */
export class CredentialChain {
  readonly credentials: readonly CredentialSource[]
  readonly #choice: { only: CredentialSource } | { firstThatLoads: ChainContext }
  readonly #closing = new AbortController()
  #chosen: CredentialSource | undefined
  #selecting: Promise<Selected> | undefined

  /** A managed identity: its one source. */
  static of(source: CredentialSource): CredentialChain {
    return new CredentialChain([source], { only: source })
  }

  /** A confidential client: `clientCredentials`, the first that loads. */
  static firstThatLoads(app: ChainContext, credentials: readonly CredentialSource[]): CredentialChain {
    return new CredentialChain(credentials, { firstThatLoads: app })
  }

  private constructor(
    credentials: readonly CredentialSource[],
    choice: { only: CredentialSource } | { firstThatLoads: ChainContext },
  ) {
    this.credentials = credentials
    this.#choice = choice
  }

  /**
   * What `select` would give as binding right now, without waiting or I/O; undefined when only
   * `select` can tell. A first-that-loads chain may re-read files to choose its credential.
   */
  bindingIfKnown(): { binding: BindingCertificate | undefined } | undefined {
    return 'only' in this.#choice ? this.#choice.only.bindingIfKnown?.() : undefined
  }

  /** The credential to use now; loaded only when it has to be chosen. */
  async inUse(signal: AbortSignal): Promise<CredentialSource> {
    return 'only' in this.#choice ? this.#choice.only : (await this.select(signal)).credential
  }

  /** The credential to use now, loaded. */
  async select(signal: AbortSignal): Promise<Selected> {
    const choice = this.#choice
    if ('only' in choice) return { credential: choice.only, binding: await choice.only.load(signal) }
    const app = choice.firstThatLoads
    const chosen = this.#chosen
    if (chosen) {
      try {
        return { credential: chosen, binding: await chosen.load(signal) }
      } catch (error) {
        if (signal.aborted) throw error
        if (this.#chosen === chosen) {
          this.#chosen = undefined
          logFailure(
            app,
            chosen,
            error,
            'the client credential in use no longer loads; walking the chain again',
          )
        }
      }
    }
    this.#selecting ??= this.#walk(app).finally(() => {
      this.#selecting = undefined
    })
    return untilAborted(this.#selecting, signal)
  }

  /** Upstream rejected `binding`: every source that holds it drops it (the others ignore it). */
  invalidate(binding: BindingCertificate): void {
    for (const credential of this.credentials) credential.invalidate?.(binding)
  }

  start(): void {
    for (const credential of this.credentials) credential.start?.()
  }

  async close(): Promise<void> {
    this.#closing.abort(new SidecarError('shutting_down', 'The sidecar is shutting down'))
    await Promise.all(this.credentials.map((credential) => credential.close?.()))
  }

  async #walk(app: ChainContext): Promise<Selected> {
    const signal = this.#closing.signal
    const failures: { credential: CredentialSource; error: unknown }[] = []
    for (const credential of this.credentials) {
      if (app.tokenType === 'mtls_pop' && !credential.canBind) {
        const error = new SidecarError(
          'credential_unavailable',
          `${credential.label}: has no certificate, so it cannot give mtls_pop tokens`,
        )
        failures.push({ credential, error })
        logFailure(app, credential, error, 'skipping a client credential')
        continue
      }
      try {
        const binding = await credential.load(signal)
        this.#chosen = credential
        app.runtime.logger.info(
          {
            identity: app.identityName,
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
        logFailure(app, credential, error, 'client credential did not load; trying the next one')
      }
    }
    throw exhausted(app, failures)
  }
}

function logFailure(app: ChainContext, credential: CredentialSource, error: unknown, message: string): void {
  app.runtime.logger.warn(
    { identity: app.identityName, credential: credential.label, reason: describeError(error) },
    message,
  )
}

/**
 * One credential: its own error (e.g. leg 1's upstream answer, with AADSTS codes). Several: a
 * summary; 503 `upstream_unavailable` when any failure was transient (IMDS or Entra unavailable or
 * slow), so callers retry; 502 `upstream_error` when upstream refused one (invalid_client: a
 * permanent refusal stays permanent); else 503 `credential_unavailable` (files the operator fixes).
 */
function exhausted(
  app: ChainContext,
  failures: { credential: CredentialSource; error: unknown }[],
): SidecarError {
  const only = failures.length === 1 ? failures[0]?.error : undefined
  if (isSidecarError(only)) return only
  const summary = failures
    .map(({ credential, error }) => `${credential.label}: ${reasonOf(error, credential.label)}`)
    .join('; ')
  const message = `No client credential of identity "${app.identityName}" loaded — ${summary}`
  const errors = failures.map((f) => f.error).filter(isSidecarError)
  const transient = errors.find((e) => e.code === 'upstream_unavailable' || e.code === 'upstream_timeout')
  if (transient)
    return new SidecarError('upstream_unavailable', message, {
      retryAfterSeconds: transient.retryAfterSeconds ?? 5,
    })
  if (errors.some((e) => e.code === 'upstream_error' || e.code === 'upstream_bad_request'))
    return new SidecarError('upstream_error', message)
  return new SidecarError('credential_unavailable', message)
}

/** The failure's message without a repeated label. */
function reasonOf(error: unknown, label: string): string {
  const message = isSidecarError(error) ? error.message : describeError(error)
  return message.startsWith(`${label}: `) ? message.slice(label.length + 2) : message
}
