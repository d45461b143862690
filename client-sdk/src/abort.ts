/**
 * The part of an AbortSignal the SDK uses; `@azure/abort-controller`'s AbortSignalLike (what Azure
 * SDK pipelines pass) has no `reason`, so a standard AbortSignal and theirs both fit.
 *
 * @example
 * ```ts
 * const signal: AbortSignalLike = AbortSignal.timeout(5000)
 * await sidecar.getToken('https://vault.azure.net/.default', { abortSignal: signal })
 * ```
 */
export interface AbortSignalLike {
  readonly aborted: boolean
  readonly reason?: unknown
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void
  removeEventListener(type: 'abort', listener: () => void): void
}

/** When one caller stops waiting: its abort signal, and a deadline with the error it raises. */
export interface WaitLimits {
  signal?: AbortSignalLike | undefined
  deadline?: { ms: number; error: () => Error } | undefined
}

/**
 * Lets one caller stop waiting (aborted, or past its deadline) without cancelling a request other
 * callers share.
 */
export function raceAbort<T>(promise: Promise<T>, limits: WaitLimits = {}): Promise<T> {
  const { signal, deadline } = limits
  if (signal === undefined && deadline === undefined) return promise
  if (signal?.aborted) return Promise.reject(abortReason(signal))
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => settle(() => reject(abortReason(signal!)))
    const timer =
      deadline === undefined
        ? undefined
        : setTimeout(() => settle(() => reject(deadline.error())), deadline.ms)
    // A caller's deadline alone never keeps the process alive: the shared request does, if anything.
    timer?.unref()
    const settle = (then: () => void) => {
      signal?.removeEventListener('abort', onAbort)
      clearTimeout(timer)
      then()
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => settle(() => resolve(value)),
      (error: unknown) => settle(() => reject(error)),
    )
  })
}

function abortReason(signal: AbortSignalLike): unknown {
  return signal.reason ?? new DOMException('The operation was aborted', 'AbortError')
}
