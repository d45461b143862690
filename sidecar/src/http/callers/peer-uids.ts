import type { Socket } from 'node:net'
import type { Metrics } from '../../core/metrics.ts'
import { PeerCredentials } from './peer-credentials.ts'
import type { SocketOwner } from './socket-owner.ts'
import type { SocketTable } from './socket-table.ts'

interface Lookup {
  settled: Promise<void>
  owner?: SocketOwner
}

export interface PeerUidsOptions {
  /** Opens the Unix socket lookup (`PeerCredentials.open`) at the first Unix connection; tests stand a failing one in. */
  openPeerCredentials?: () => PeerCredentials | { problem: string }
}

/**
 * The local uid at the other end of each accepted connection, looked up once when the connection
 * is accepted (`server.on('connection', peers.remember)` on the TCP listener, `rememberUnix` on
 * the Unix socket) and remembered for as long as the socket lives, so keep-alive requests cost a
 * WeakMap lookup. The caller guard awaits the lookup (`settled`) before any route reads `ownerOf`.
 */
export class PeerUids {
  readonly #lookups = new WeakMap<Socket, Lookup>()
  readonly #table: SocketTable
  readonly #metrics: Metrics
  readonly #openPeerCredentials: () => PeerCredentials | { problem: string }
  /** Unix socket: undefined until the first connection; then the lookup, or why there is none. */
  #peerCredentials: PeerCredentials | { problem: string } | undefined

  constructor(table: SocketTable, metrics: Metrics, options: PeerUidsOptions = {}) {
    this.#table = table
    this.#metrics = metrics
    this.#openPeerCredentials = options.openPeerCredentials ?? (() => PeerCredentials.open())
  }

  /** A TCP connection: its owner is looked up in the kernel's socket table (socket-table.ts). */
  readonly remember = (socket: Socket): void => {
    this.#record(socket, this.#lookUp(socket))
  }

  /**
   * A Unix socket connection: its peer's uid is read at once (SO_PEERCRED, peer-credentials.ts).
   * Where that cannot be done the owner is unknown, so callers.allow refuses it: fail closed.
   */
  readonly rememberUnix = (socket: Socket): void => {
    this.#peerCredentials ??= this.#openPeerCredentials()
    const lookup = this.#peerCredentials
    this.#record(
      socket,
      Promise.resolve(
        lookup instanceof PeerCredentials
          ? lookup.ownerOf(socket)
          : { uid: undefined, reason: `SO_PEERCRED unavailable: ${lookup.problem}` },
      ),
    )
  }

  #record(socket: Socket, owner: Promise<SocketOwner>): void {
    const started = performance.now()
    const lookup: Lookup = {
      settled: owner.then((owner) => {
        lookup.owner = owner
        this.#metrics.callerLookups.observe(
          { result: owner.uid === undefined ? 'unknown' : 'found' },
          (performance.now() - started) / 1000,
        )
      }),
    }
    this.#lookups.set(socket, lookup)
  }

  /** Resolves once the owner of `socket` is known (at once for a socket never remembered). */
  async settled(socket: Socket | undefined): Promise<void> {
    if (socket !== undefined) await this.#lookups.get(socket)?.settled
  }

  /** While the lookup for `socket` runs: a promise that resolves once its owner is known. */
  pending(socket: Socket): Promise<void> | undefined {
    const lookup = this.#lookups.get(socket)
    return lookup !== undefined && lookup.owner === undefined ? lookup.settled : undefined
  }

  /** Who opened `socket`; unknown for a socket never remembered, or whose lookup is still running. */
  ownerOf(socket: Socket | undefined): SocketOwner {
    if (socket === undefined)
      return { uid: undefined, reason: 'the request did not arrive over a connection' }
    const lookup = this.#lookups.get(socket)
    if (lookup === undefined)
      return { uid: undefined, reason: 'the connection was not accepted on a listener callers.allow watches' }
    return lookup.owner ?? { uid: undefined, reason: 'its owner is still being looked up' }
  }

  async #lookUp(socket: Socket): Promise<SocketOwner> {
    const { remoteAddress, remotePort, localAddress, localPort } = socket
    if (
      remoteAddress === undefined ||
      remotePort === undefined ||
      localAddress === undefined ||
      localPort === undefined
    )
      return { uid: undefined, reason: 'the connection closed before its owner could be read' }
    return this.#table.ownerOf(
      { address: remoteAddress, port: remotePort },
      { address: localAddress, port: localPort },
    )
  }
}
