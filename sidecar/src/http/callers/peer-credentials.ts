import type { Socket } from 'node:net'
import { arch, endianness } from 'node:os'
import type { SocketOwner } from './socket-owner.ts'
import { loadLibc, type Libc } from './libc.ts'

const SOL_SOCKET = 1
/** `<asm/socket.h>`: 17 on most architectures; powerpc numbers it 21, mips 18. */
const SO_PEERCRED = arch().startsWith('ppc') ? 21 : arch().startsWith('mips') ? 18 : 17
/** `struct ucred { pid_t pid; uid_t uid; gid_t gid; }`, host byte order. */
const ucredBytes = 12
const littleEndian = endianness() === 'LE'

/**
 * The uid of the process at the other end of an accepted Unix socket connection: `SO_PEERCRED`,
 * which the kernel recorded when the peer called connect(2), so it names who connected, not who
 * holds the socket now. Node has no API for it, so libc's `getsockopt` is called through koffi
 * (libc.ts); one system call, on the event loop.
 */
export class PeerCredentials {
  readonly #libc: Libc
  readonly #value = Buffer.alloc(ucredBytes)

  private constructor(libc: Libc) {
    this.#libc = libc
  }

  /** The lookup, or why there is none (koffi not installed or not loadable here). Never throws. */
  static open(): PeerCredentials | { problem: string } {
    try {
      return new PeerCredentials(loadLibc())
    } catch (error) {
      return { problem: `koffi (FFI) is not loadable: ${(error as Error).message.split('\n')[0]}` }
    }
  }

  /** The peer's uid, or the reason it could not be read. Never throws. */
  ownerOf(socket: Socket): SocketOwner {
    // libuv's pipe handle exposes its descriptor on Unix (`handle.fd`); there is no public API.
    const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd
    if (typeof fd !== 'number' || fd < 0)
      return { uid: undefined, reason: 'the connection has no file descriptor (closed already)' }
    const length = [ucredBytes]
    if (this.#libc.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, this.#value, length) !== 0)
      return { uid: undefined, reason: `getsockopt(SO_PEERCRED) failed (errno ${this.#libc.errno()})` }
    if (length[0] !== ucredBytes)
      return { uid: undefined, reason: `getsockopt(SO_PEERCRED) answered ${length[0]} bytes` }
    return { uid: littleEndian ? this.#value.readUInt32LE(4) : this.#value.readUInt32BE(4) }
  }
}
