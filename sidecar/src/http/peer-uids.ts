import type { Socket } from 'node:net'
import type { Metrics } from '../metrics.ts'
import type { SocketOwner, SocketTable } from '../net/socket-table.ts'

/**
 * The local uid at the other end of each accepted TCP connection, looked up once when the
 * connection is accepted (`server.on('connection', peers.remember)`) and remembered for as long as
 * the socket lives, so keep-alive requests cost a WeakMap lookup.
 */
export class PeerUids {
  readonly #owners = new WeakMap<Socket, SocketOwner>()
  readonly #table: SocketTable
  readonly #metrics: Metrics

  constructor(table: SocketTable, metrics: Metrics) {
    this.#table = table
    this.#metrics = metrics
  }

  readonly remember = (socket: Socket): void => {
    const started = performance.now()
    const owner = this.#lookUp(socket)
    this.#metrics.callerLookups.observe(
      { result: owner.uid === undefined ? 'unknown' : 'found' },
      (performance.now() - started) / 1000,
    )
    this.#owners.set(socket, owner)
  }

  /** Who opened `socket`; a socket this object never saw (or none at all) has no known owner. */
  ownerOf(socket: Socket | undefined): SocketOwner {
    if (socket === undefined)
      return { uid: undefined, reason: 'the request did not arrive over a connection' }
    return (
      this.#owners.get(socket) ?? {
        uid: undefined,
        reason: 'the connection was not accepted on the TCP listener',
      }
    )
  }

  #lookUp(socket: Socket): SocketOwner {
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
