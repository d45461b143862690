/** Named emulator endpoints that faults can be scripted on and calls are counted for. */
export type EmulatedEndpoint =
  | 'imds.token'
  | 'imds.getplatformmetadata'
  | 'imds.issuecredential'
  | 'entra.token'
  | 'entra.mtls.token'
  | 'resource'

/** One scripted failure: the next matching call answers this instead of doing its work. */
export interface Fault {
  status: number
  /** JSON body; defaults to an OAuth-shaped error for the status. */
  body?: unknown
  headers?: Record<string, string>
  /** Delay before answering (for timeout tests); the answer still comes. */
  delayMs?: number
}

/**
 * Scriptable faults: a FIFO per endpoint. `script('imds.token', [{status: 410}, {status: 500}])`
 * makes the next two calls fail that way, then calls succeed again.
 */
export class FaultPlan {
  readonly #queues = new Map<EmulatedEndpoint, Fault[]>()

  script(endpoint: EmulatedEndpoint, faults: Fault[]): void {
    this.#queues.set(endpoint, [...(this.#queues.get(endpoint) ?? []), ...faults])
  }

  /** Takes the next fault for `endpoint`, if any. */
  take(endpoint: EmulatedEndpoint): Fault | undefined {
    return this.#queues.get(endpoint)?.shift()
  }

  clear(): void {
    this.#queues.clear()
  }
}

/** Counts calls per endpoint, so tests can assert single-flight and "reached no server". */
export class CallCounter {
  readonly #counts = new Map<EmulatedEndpoint, number>()
  readonly #cae = new Map<EmulatedEndpoint, Record<string, string>[]>()

  record(endpoint: EmulatedEndpoint): void {
    this.#counts.set(endpoint, this.count(endpoint) + 1)
  }

  /**
   * Records the continuous access evaluation parameters of a call (claims, xms_cc,
   * token_sha256_to_refresh; never a token or secret), so tests can see what reached upstream.
   */
  recordCae(endpoint: EmulatedEndpoint, parameters: Record<string, string>): void {
    this.#cae.set(endpoint, [...this.caeParameters(endpoint), parameters])
  }

  /** Per call of `endpoint`, in order: the CAE parameters it carried (empty object when none). */
  caeParameters(endpoint: EmulatedEndpoint): Record<string, string>[] {
    return this.#cae.get(endpoint) ?? []
  }

  count(endpoint: EmulatedEndpoint): number {
    return this.#counts.get(endpoint) ?? 0
  }

  reset(): void {
    this.#counts.clear()
    this.#cae.clear()
  }
}
