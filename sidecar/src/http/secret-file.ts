import type { Stats } from 'node:fs'
import { stat } from 'node:fs/promises'
import type { Clock } from '../core/clock.ts'
import type { Logger } from '../core/log.ts'
import {
  modeOf,
  readableByOthers,
  readCheckedFile,
  readCheckedFileSync,
  trustedFile,
  describeFileProblem,
  type TrustedRead,
} from '../core/trusted-file.ts'

const key = 'callers.secretFile'

export interface SecretFileOptions {
  path: string
  clock: Clock
  logger: Logger
  /** A check younger than this is trusted without I/O (1 s). */
  checkIntervalMs?: number
}

/**
 * The caller secrets (`callers.secretFile`): one a line, so that during a rotation the new and
 * the old secret are both accepted until the old line is removed. Read at start (a missing,
 * unreadable, empty or untrusted file stops the daemon) and re-read when the file changes, so it
 * can be rotated without a restart.
 *
 * On the request path nothing blocks: `current()` answers from memory and, at most once a
 * `checkIntervalMs`, starts a check off the event loop whose outcome the next requests see. The
 * file is opened without blocking and judged on the open descriptor, so a FIFO put at the path
 * is refused instead of hanging every route. Once the file is deleted, emptied, or no longer
 * trusted (contract §2: a regular file owned by the daemon's uid or root, not writable by group or
 * others), no secret is accepted any more until it is fixed; each such change is logged once.
 */
export class SecretFile {
  readonly path: string
  readonly #options: SecretFileOptions
  readonly #intervalMs: number
  /** The accepted secrets joined by newlines (see `current`). */
  #accepted: string
  #fingerprint: string | undefined
  /** What is wrong with the file now (logged once per change), or undefined while it is usable. */
  #problem: string | undefined
  #warnedReadable: boolean
  #checkedAt: number
  #checking: Promise<void> | undefined

  /**
   * Reads the file now. Throws an Error whose message starts with `callers.secretFile:` when it
   * cannot be used: missing, unreadable, not a regular file, untrusted, or holding no secret.
   */
  constructor(options: SecretFileOptions) {
    this.path = options.path
    this.#options = options
    this.#intervalMs = options.checkIntervalMs ?? 1000
    let read: TrustedRead
    try {
      read = readCheckedFileSync(this.path, trustedFile)
    } catch (error) {
      throw new Error(`${key}: ${describeProblem(this.path, error)}`)
    }
    const secrets = parseSecrets(read.bytes)
    if (secrets.length === 0) throw new Error(`${key}: ${this.path} holds no secret`)
    this.#accepted = secrets.join('\n')
    this.#fingerprint = fingerprintOf(read.stats)
    this.#problem = undefined
    this.#warnedReadable = false
    this.#warnIfReadable(read.stats)
    this.#checkedAt = options.clock.now()
  }

  /**
   * The secrets accepted now, one a line (two during a rotation); the empty string when none is
   * (the file was deleted, emptied or refused): `secretMatches` then matches nothing. A header
   * value cannot hold a newline, so no caller can send the joined text itself.
   */
  current(): string {
    if (this.#checking === undefined && this.#options.clock.now() - this.#checkedAt >= this.#intervalMs) {
      this.#checking = this.refresh().finally(() => {
        this.#checking = undefined
      })
    }
    return this.#accepted
  }

  /** Checks the file now (off the event loop) and applies what it holds; never rejects. */
  async refresh(): Promise<void> {
    try {
      const seen = await stat(this.path)
      if (this.#problem === undefined && fingerprintOf(seen) === this.#fingerprint) return
      const read = await readCheckedFile(this.path, trustedFile)
      const secrets = parseSecrets(read.bytes)
      if (secrets.length === 0) return this.#refuse(`${this.path} holds no secret (emptied)`)
      const changed = secrets.join('\n') !== this.#accepted || this.#problem !== undefined
      this.#accepted = secrets.join('\n')
      this.#fingerprint = fingerprintOf(read.stats)
      if (this.#problem !== undefined) {
        this.#options.logger.info(
          { file: this.path, key, secrets: secrets.length },
          'caller secret file usable again',
        )
      } else if (changed) {
        this.#options.logger.info(
          { file: this.path, key, secrets: secrets.length },
          'caller secret file re-read',
        )
      }
      this.#problem = undefined
      this.#warnIfReadable(read.stats)
    } catch (error) {
      this.#refuse(describeProblem(this.path, error))
    } finally {
      this.#checkedAt = this.#options.clock.now()
    }
  }

  #refuse(problem: string): void {
    this.#accepted = ''
    this.#fingerprint = undefined
    if (problem === this.#problem) return
    this.#problem = problem
    this.#options.logger.error(
      { file: this.path, key, problem },
      `${key} ${problem}: no caller secret is accepted until it is fixed`,
    )
  }

  #warnIfReadable(stats: Stats): void {
    const readable = readableByOthers(stats)
    if (readable && !this.#warnedReadable) {
      this.#options.logger.warn(
        { file: this.path, key, mode: modeOf(stats) },
        `${key} is readable by every local user (mode ${modeOf(stats)}): make it 0600 or 0640 (chmod o-r)`,
      )
    }
    this.#warnedReadable = readable
  }
}

/** One secret a line; blank lines and surrounding whitespace (a trailing CR) are not part of any. */
export function parseSecrets(bytes: Buffer): string[] {
  return bytes
    .toString('utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
}

/** Core's file-problem sentence, saying what a missing secret file usually means; never content. */
function describeProblem(path: string, error: unknown): string {
  if ((error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT')
    return `cannot read ${path} (ENOENT: deleted or never created)`
  return describeFileProblem(path, error)
}

function fingerprintOf(s: Stats): string {
  return `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}:${s.mode}:${s.uid}`
}
