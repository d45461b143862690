import { createSecureContext } from 'node:tls'
import { X509Certificate } from 'node:crypto'
import type { Clock, Timer } from '../../core/clock.ts'
import type { Logger } from '../../core/log.ts'
import { WatchedFile } from '../../core/watched-file.ts'

export interface KeyPair {
  cert: Buffer
  key: Buffer
  /** The leaf certificate's notAfter, for the log. */
  notAfter: string
}

/**
 * The serving certificate and key, re-read when either file changes (cert-manager rewrites the
 * Secret, the kubelet swaps the mounted files). A new pair is used only once both files hold a
 * matching certificate and key; until then (one file written, not the other) the old pair keeps
 * serving, so no handshake ever fails for a rotation. Existing connections keep their context.
 */
export class TlsFiles {
  readonly #cert: WatchedFile<Buffer>
  readonly #key: WatchedFile<Buffer>
  readonly #clock: Clock
  readonly #logger: Logger
  #timer: Timer | undefined
  #closed = false
  #lastProblem: string | undefined

  constructor(paths: { cert: string; key: string }, deps: { clock: Clock; logger: Logger }) {
    const watched = (path: string) =>
      new WatchedFile<Buffer>({ path, clock: deps.clock, checkIntervalMs: 0, parse: (bytes) => bytes })
    this.#cert = watched(paths.cert)
    this.#key = watched(paths.key)
    this.#clock = deps.clock
    this.#logger = deps.logger
  }

  /** The pair as the files hold it now. @throws when a file cannot be read or the pair does not match. */
  async load(): Promise<KeyPair> {
    const [cert, key] = await Promise.all([this.#cert.check(), this.#key.check()])
    return pairOf(cert.value, key.value)
  }

  /** Checks the files every `intervalMs`; calls `onChange` with each new valid pair. */
  watch(intervalMs: number, onChange: (pair: KeyPair) => void): void {
    const tick = async () => {
      if (this.#closed) return
      try {
        const [cert, key] = await Promise.all([this.#cert.check(), this.#key.check()])
        if (cert.value !== cert.previous || key.value !== key.previous) {
          const pair = pairOf(cert.value, key.value)
          onChange(pair)
          this.#lastProblem = undefined
          this.#logger.info({ notAfter: pair.notAfter }, 'serving certificate reloaded')
        }
      } catch (error) {
        // Forget both, so the next tick reads them again even if they do not change any more.
        this.#cert.forget()
        this.#key.forget()
        const problem = error instanceof Error ? error.message : String(error)
        if (problem !== this.#lastProblem)
          this.#logger.warn({ error: problem }, 'serving certificate not reloaded; the previous one stays')
        this.#lastProblem = problem
      }
      if (!this.#closed) this.#timer = this.#clock.setTimer(intervalMs, () => void tick())
    }
    this.#timer = this.#clock.setTimer(intervalMs, () => void tick())
  }

  close(): void {
    this.#closed = true
    this.#timer?.cancel()
  }
}

function pairOf(cert: Buffer, key: Buffer): KeyPair {
  // Throws "key values mismatch" for a certificate and key that do not belong together.
  createSecureContext({ cert, key })
  return { cert, key, notAfter: new Date(new X509Certificate(cert).validTo).toISOString() }
}
