import type { Clock } from '../core/clock.ts'
import { WatchedFile } from '../core/watched-file.ts'

/**
 * The caller secret (`callers.secretFile`), re-read when the file changes so it can be rotated
 * without a restart (checked at most once a second). Trailing newlines are not part of it.
 */
export class SecretFile {
  readonly #file: WatchedFile<string>
  #value: string

  /** Throws when the file is missing or empty: the daemon does not start without its secret. */
  constructor(path: string, clock: Clock) {
    this.#file = new WatchedFile({
      path,
      clock,
      checkIntervalMs: 1000,
      parse: (bytes) => {
        const value = bytes.toString('utf8').replace(/[\r\n]+$/, '')
        if (!value) throw new Error(`callers.secretFile ${path} is empty`)
        return value
      },
    })
    this.#value = this.#file.checkSync().value
  }

  current(): string {
    if (this.#file.due) {
      try {
        this.#value = this.#file.checkSync().value
      } catch {
        // Keep the last good secret while the file is being replaced.
      }
    }
    return this.#value
  }
}
