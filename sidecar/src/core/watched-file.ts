import type { Stats } from 'node:fs'
import { stat } from 'node:fs/promises'
import type { Clock } from './clock.ts'
import { readCheckedFile, regularFile, type FileRule } from './trusted-file.ts'

export interface WatchedFileOptions<T> {
  path: string
  clock: Clock
  /** A check younger than this is trusted without I/O (`recent`); 0: every use checks. */
  checkIntervalMs: number
  /** Turns the file's bytes into the value; throws when they do not make one. */
  parse(bytes: Buffer): T
  /** A value that is no longer usable at `now` (an expired certificate) is read again. */
  isStale?(value: T, now: number): boolean
  /** What the file must be to be read; default: a regular file (never a FIFO, which would block). */
  check?: FileRule
}

/** One check: the value now, and the one before it (the same object when the file did not change). */
export interface FileCheck<T> {
  value: T
  previous: T | undefined
}

/**
 * A file that is re-read when it changes, so it can be rotated without a restart: checked with a
 * stat (inode, size, mtime, ctime — a rename over it or a rewrite in place both show) and read
 * again only when that changed. A check that fails (file gone, unreadable, not parseable) forgets
 * the value and throws; callers that must keep the last good value keep it themselves.
 */
export class WatchedFile<T> {
  readonly path: string
  readonly #options: WatchedFileOptions<T>
  #value: T | undefined
  #fingerprint: string | undefined
  #checkedAt = Number.NEGATIVE_INFINITY
  #checking: Promise<FileCheck<T>> | undefined

  constructor(options: WatchedFileOptions<T>) {
    this.path = options.path
    this.#options = options
  }

  /** The value as last read, whether or not that was recent; undefined after a failed check. */
  get value(): T | undefined {
    return this.#value
  }

  /** Whether the last check (good or not) is `checkIntervalMs` old or older. */
  get due(): boolean {
    return this.#options.clock.now() - this.#checkedAt >= this.#options.checkIntervalMs
  }

  /** The value when the last check is younger than `checkIntervalMs` and it is not stale: no I/O. */
  get recent(): T | undefined {
    const value = this.#value
    if (value === undefined || this.due) return undefined
    return this.#options.isStale?.(value, this.#options.clock.now()) ? undefined : value
  }

  /** Stats the file and reads it when it changed; at most one check at a time. */
  check(): Promise<FileCheck<T>> {
    this.#checking ??= this.#check().finally(() => {
      this.#checking = undefined
    })
    return this.#checking
  }

  /** Read the file on the next check even if it looks unchanged (upstream refused what it held). */
  forget(): void {
    this.#value = undefined
    this.#fingerprint = undefined
    this.#checkedAt = Number.NEGATIVE_INFINITY
  }

  async #check(): Promise<FileCheck<T>> {
    try {
      const unchanged = this.#unchanged(fingerprintOf(await stat(this.path)))
      if (unchanged) return unchanged
      // Opened without blocking and checked on the descriptor: a FIFO put there never hangs a read.
      const { bytes, stats } = await readCheckedFile(this.path, this.#options.check ?? regularFile)
      return this.#store(fingerprintOf(stats), bytes)
    } catch (error) {
      this.#failed()
      throw error
    }
  }

  /** Nothing usable until the next check; a failure counts as a check for `due`. */
  #failed(): void {
    this.#value = undefined
    this.#fingerprint = undefined
    this.#checkedAt = this.#options.clock.now()
  }

  #unchanged(fingerprint: string): FileCheck<T> | undefined {
    const value = this.#value
    const now = this.#options.clock.now()
    if (value === undefined || fingerprint !== this.#fingerprint || this.#options.isStale?.(value, now))
      return undefined
    this.#checkedAt = now
    return { value, previous: value }
  }

  #store(fingerprint: string, bytes: Buffer): FileCheck<T> {
    const previous = this.#value
    const value = this.#options.parse(bytes)
    this.#value = value
    this.#fingerprint = fingerprint
    this.#checkedAt = this.#options.clock.now()
    return { value, previous }
  }
}

function fingerprintOf(s: Stats): string {
  return `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`
}
