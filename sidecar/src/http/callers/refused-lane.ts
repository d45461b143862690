/**
 * Where the fast lane puts requests it will not serve because `callers.allow` does not admit
 * their connection (a refusal, or an identity the uid may not use): they go to the hono app, which
 * refuses, logs and counts, but `perTurn` at a time per event-loop turn, after that turn's I/O
 * (setImmediate). A refused uid's burst of new connections then costs the allowed callers at most
 * `perTurn` refusals' work before their own requests are read and served, instead of waiting behind
 * the whole burst; the refused callers wait instead. Unbounded in length only as the number of
 * open connections is (HTTP/1.1: one request in flight per connection).
 */
export class RefusedLane {
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
