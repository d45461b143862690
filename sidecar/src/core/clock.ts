/** Time is a parameter: production uses `SystemClock`, tests drive a fake one. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number
  /** Resolves after `ms`; rejects with the signal's reason when aborted. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>
  /** Runs `fn` once after `ms`. Timers never keep the process alive. */
  setTimer(ms: number, fn: () => void): Timer
}

export interface Timer {
  cancel(): void
}

export class SystemClock implements Clock {
  now(): number {
    return Date.now()
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason)
      const onAbort = () => {
        clearTimeout(handle)
        reject(signal?.reason)
      }
      const handle = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }, ms)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  setTimer(ms: number, fn: () => void): Timer {
    const handle = setTimeout(fn, ms)
    handle.unref()
    return { cancel: () => clearTimeout(handle) }
  }
}

/** Random source for jitter, injectable so schedules are testable. Returns [0, 1). */
export type Random = () => number
