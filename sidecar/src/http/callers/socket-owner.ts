/** One end of a TCP connection as Node reports it (`socket.remoteAddress`, `socket.remotePort`). */
export interface Endpoint {
  address: string
  port: number
}

/** Who owns a socket, or why that could not be told: what every owner lookup answers. */
export type SocketOwner = { uid: number } | { uid: undefined; reason: string }
