import type { Socket } from 'node:net'
import type { Metrics } from '../../core/metrics.ts'
import type { SocketOwner, SocketTable } from './socket-table.ts'

interface Lookup {
  settled: Promise<void>
  owner?: SocketOwner
}

/**
 * The local uid at the other end of each accepted TCP connection, looked up once when the
 * connection is accepted (`server.on('connection', peers.remember)`) and remembered for as long as
 * the socket lives, so keep-alive requests cost a WeakMap lookup. The lookup runs off the event
 * loop; the caller guard awaits it (`settled`) before any route reads `ownerOf`.
 */
export class PeerUids {
  readonly #lookups = new WeakMap<Socket, Lookup>()
  readonly #table: SocketTable
  readonly #metrics: Metrics

  constructor(table: SocketTable, metrics: Metrics) {
    this.#table = table
    this.#metrics = metrics
  }

  readonly remember = (socket: Socket): void => {
    const started = performance.now()
    const lookup: Lookup = {
      settled: this.#lookUp(socket).then((owner) => {
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
      return { uid: undefined, reason: 'the connection was not accepted on the TCP listener' }
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
