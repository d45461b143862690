import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Context } from 'hono'
import type { Clock } from '../../core/clock.ts'
import type { CallerAllowEntry } from '../../config/types.ts'
import { SidecarError } from '../../core/errors.ts'
import type { Logger } from '../../core/log.ts'
import type { Metrics } from '../../core/metrics.ts'
import { callerPolicy, firstAllowedIdentity, type CallerPolicy, type CallerRefusal } from './caller-allow.ts'
import type { PeerUids } from './peer-uids.ts'

/** What token routes ask about the caller of a request (contract §2 `callers.allow`). */
export interface CallerAccess {
  /** For the caller guard: waits for the connection's uid, then throws 403 unless it has an entry. */
  authorizeConnection(c: Context): Promise<void>
  /** Throws 403 unless the caller may use `identity` (undefined: has any identity at all). */
  authorize(c: Context, identity?: string): void
  /** The identity a compat route serves when the request names none; undefined: `defaultIdentity`. */
  compatIdentity(c: Context): string | undefined
  /**
   * For the fast lane, which neither waits nor refuses: whether the caller on `socket` is known
   * now and may use `identity`. False sends the request to the hono app, which waits for the
   * lookup, or refuses, logs and counts; so the lane only ever serves what the app would serve.
   */
  admits(socket: Socket, identity: string): boolean
  /** While the owner of `socket` is being looked up: resolves once it is known (for the fast lane). */
  pending(socket: Socket): Promise<void> | undefined
  /** `compatIdentity` for the fast lane, by connection. */
  compatIdentityOf(socket: Socket): string | undefined
}

/** No `callers.allow`: every caller that passed the other checks may use every identity. */
export const everyCaller: CallerAccess = {
  authorizeConnection: async () => {},
  authorize: () => {},
  compatIdentity: () => undefined,
  admits: () => true,
  pending: () => undefined,
  compatIdentityOf: () => undefined,
}

export interface AllowListOptions {
  entries: readonly CallerAllowEntry[]
  peers: PeerUids
  logger: Logger
  metrics: Metrics
  clock: Clock
  /** At most this many "caller refused" lines per minute; the rest are counted in the next line. */
  logLinesPerMinute?: number
}

/**
 * `callers.allow` enforced per request from the uid remembered per connection. Every refusal is
 * counted (uid, identity); a refused connection is logged once, whatever number of requests it
 * carries, and the log lines themselves are rate-limited so a refused client in a loop cannot
 * flood the log.
 */
export class AllowListAccess implements CallerAccess {
  readonly #entries: readonly CallerAllowEntry[]
  readonly #policy: CallerPolicy
  readonly #options: AllowListOptions
  readonly #logged = new WeakSet<Socket>()
  #windowStart = Number.NEGATIVE_INFINITY
  #linesInWindow = 0
  #suppressed = 0

  constructor(options: AllowListOptions) {
    this.#entries = options.entries
    this.#policy = callerPolicy(options.entries)
    this.#options = options
  }

  async authorizeConnection(c: Context): Promise<void> {
    await this.#options.peers.settled(socketOf(c))
    this.authorize(c)
  }

  authorize(c: Context, identity?: string): void {
    const socket = socketOf(c)
    const owner = this.#options.peers.ownerOf(socket)
    const decision = this.#policy(owner.uid, identity)
    if (decision.allowed) return
    this.#options.metrics.callerRefusals.inc({
      uid: decision.uid === undefined ? 'unknown' : String(decision.uid),
      identity: decision.identity ?? 'none',
    })
    const detail = owner.uid === undefined ? ` (${owner.reason})` : ''
    this.#logOnce(socket, decision, owner.uid === undefined ? owner.reason : undefined)
    throw new SidecarError('forbidden', `${decision.message}${detail}`, { reason: decision.reason })
  }

  compatIdentity(c: Context): string | undefined {
    return firstAllowedIdentity(this.#entries, this.#options.peers.ownerOf(socketOf(c)).uid)
  }

  admits(socket: Socket, identity: string): boolean {
    const { uid } = this.#options.peers.ownerOf(socket)
    return uid !== undefined && this.#policy(uid, identity).allowed
  }

  pending(socket: Socket): Promise<void> | undefined {
    return this.#options.peers.pending(socket)
  }

  compatIdentityOf(socket: Socket): string | undefined {
    return firstAllowedIdentity(this.#entries, this.#options.peers.ownerOf(socket).uid)
  }

  #logOnce(socket: Socket | undefined, refusal: CallerRefusal, lookupProblem: string | undefined): void {
    if (socket !== undefined) {
      if (this.#logged.has(socket)) return
      this.#logged.add(socket)
    }
    const now = this.#options.clock.now()
    if (now - this.#windowStart >= 60_000) {
      this.#windowStart = now
      this.#linesInWindow = 0
    }
    if (this.#linesInWindow >= (this.#options.logLinesPerMinute ?? 20)) {
      this.#suppressed++
      return
    }
    this.#linesInWindow++
    const suppressed = this.#suppressed
    this.#suppressed = 0
    this.#options.logger.warn(
      {
        uid: refusal.uid ?? 'unknown',
        identity: refusal.identity,
        reason: refusal.reason,
        ...(lookupProblem === undefined ? {} : { lookup: lookupProblem }),
        remote_port: socket?.remotePort,
        ...(suppressed > 0 ? { suppressed_since_last_line: suppressed } : {}),
      },
      'caller refused by callers.allow',
    )
  }
}

/** The TCP socket a request arrived on, via @hono/node-server's `c.env.incoming`; undefined in process. */
function socketOf(c: Context): Socket | undefined {
  return (c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket
}
