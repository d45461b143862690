import { readFileSync, statSync } from 'node:fs'

/**
 * The caller secret (`callers.secretFile`), re-read when the file changes so it can be rotated
 * without a restart (checked at most once a second). Trailing newlines are not part of it.
 */
export class SecretFile {
  readonly #path: string
  #value: string
  #mtimeMs: number
  #checkedAt = 0

  constructor(path: string) {
    this.#path = path
    const { value, mtimeMs } = SecretFile.#read(path)
    this.#value = value
    this.#mtimeMs = mtimeMs
  }

  current(): string {
    const now = Date.now()
    if (now - this.#checkedAt >= 1000) {
      this.#checkedAt = now
      try {
        const mtimeMs = statSync(this.#path).mtimeMs
        if (mtimeMs !== this.#mtimeMs)
          ({ value: this.#value, mtimeMs: this.#mtimeMs } = SecretFile.#read(this.#path))
      } catch {
        // Keep the last good secret while the file is being replaced.
      }
    }
    return this.#value
  }

  static #read(path: string): { value: string; mtimeMs: number } {
    const value = readFileSync(path, 'utf8').replace(/[\r\n]+$/, '')
    if (!value) throw new Error(`callers.secretFile ${path} is empty`)
    return { value, mtimeMs: statSync(path).mtimeMs }
  }
}
