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

/** Lets one caller stop waiting without cancelling a request other callers share. */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignalLike | undefined): Promise<T> {
  if (signal === undefined) return promise
  if (signal.aborted) return Promise.reject(abortReason(signal))
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortReason(signal))
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(error)
      },
    )
  })
}

function abortReason(signal: AbortSignalLike): unknown {
  return signal.reason ?? new DOMException('The operation was aborted', 'AbortError')
}
