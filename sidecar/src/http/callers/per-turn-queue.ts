/**
 * Work run `perTurn` pieces per event-loop turn, after that turn's I/O (setImmediate), in arrival
 * order: a burst of it then delays other callers by at most `perTurn` pieces before their own
 * requests are read and served, instead of by the whole burst. Used by `callers.allow` so that a
 * refused uid's burst of new connections does not starve allowed callers:
 * - the fast lane puts requests it will not admit (a refusal to come) here on their way to the hono
 *   app, which refuses, logs and counts (8 per turn);
 * - the socket table puts sock_diag lookups here (32 per turn), so a wave of hundreds of accepted
 *   connections is looked up over several turns rather than in one stall.
 * Unbounded in length only as the number of open connections is (HTTP/1.1: one request in flight
 * per connection).
 */
export class PerTurnQueue {
  readonly #perTurn: number
  readonly #queue: (() => void)[] = []
  #head = 0
  #scheduled = false

  constructor(options: { perTurn?: number } = {}) {
    this.#perTurn = options.perTurn ?? 8
  }

  /** Runs `work` in a later turn, in arrival order. */
  defer(work: () => void): void {
    this.#queue.push(work)
    if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(this.#drain)
    }
  }

  /** Requests waiting. */
  get length(): number {
    return this.#queue.length - this.#head
  }

  readonly #drain = (): void => {
    const end = Math.min(this.#queue.length, this.#head + this.#perTurn)
    while (this.#head < end) {
      const work = this.#queue[this.#head] as () => void
      this.#queue[this.#head++] = noop
      try {
        work()
      } catch {
        // `work` answers its own errors (the hono app does); one failing never stops the others.
      }
    }
    if (this.#head === this.#queue.length) {
      this.#queue.length = 0
      this.#head = 0
      this.#scheduled = false
    } else {
      setImmediate(this.#drain)
    }
  }
}

const noop = (): void => {}
