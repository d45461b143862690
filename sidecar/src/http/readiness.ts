/**
 * Readiness: not ready while starting, while a warm identity has no credential, and once draining.
 * Reasons are kept for /readyz's body and the log.
 */
export class Readiness {
  #listening = false
  #draining = false
  #inFlight = 0
  #idleWaiters: (() => void)[] = []
  readonly #pendingWarm = new Map<string, string>()

  markListening(): void {
    this.#listening = true
  }

  markDraining(): void {
    this.#draining = true
  }

  /** An identity marked warm has not got its credential yet (reason: last error or "starting"). */
  warmPending(identity: string, reason: string): void {
    this.#pendingWarm.set(identity, reason)
  }

  warmDone(identity: string): void {
    this.#pendingWarm.delete(identity)
  }

  /** Counts requests in flight, so a drain can wait for them. */
  requestStarted(): void {
    this.#inFlight++
  }

  requestFinished(): void {
    this.#inFlight--
    if (this.#inFlight === 0) for (const resolve of this.#idleWaiters.splice(0)) resolve()
  }

  /** Resolves once no request is in flight. */
  idle(): Promise<void> {
    return this.#inFlight === 0
      ? Promise.resolve()
      : new Promise((resolve) => this.#idleWaiters.push(resolve))
  }

  get draining(): boolean {
    return this.#draining
  }

  get ready(): boolean {
    return this.#listening && !this.#draining && this.#pendingWarm.size === 0
  }

  describe(): { status: 'ready' | 'starting' | 'draining'; waiting_for?: Record<string, string> } {
    if (this.#draining) return { status: 'draining' }
    if (this.ready) return { status: 'ready' }
    return this.#pendingWarm.size
      ? { status: 'starting', waiting_for: Object.fromEntries(this.#pendingWarm) }
      : { status: 'starting' }
  }
}
