import { isIPv4 } from 'node:net'
import { endianness } from 'node:os'
import type { Endpoint, SocketOwner } from './socket-owner.ts'
import { ipv6Bytes } from './ipv6-bytes.ts'
import { loadLibc, type Libc } from './libc.ts'

/** Netlink headers and inet_diag's non-network fields are in host byte order. */
const littleEndian = endianness() === 'LE'

// <linux/netlink.h>, <linux/sock_diag.h>, <linux/inet_diag.h>, <sys/socket.h>
const AF_NETLINK = 16
const SOCK_RAW = 3
const SOCK_CLOEXEC = 0o2000000
const NETLINK_SOCK_DIAG = 4
const SOCK_DIAG_BY_FAMILY = 20
const NLMSG_ERROR = 2
const NLMSG_DONE = 3
const NLM_F_REQUEST = 1
const NLM_F_DUMP = 0x300
const MSG_DONTWAIT = 0x40
const AF_INET = 2
const AF_INET6 = 10
const IPPROTO_TCP = 6
const nlmsghdrBytes = 16
/** nlmsghdr + inet_diag_req_v2 (family, protocol, ext, pad, states, inet_diag_sockid of 48). */
const requestBytes = nlmsghdrBytes + 56
/** Offsets in the answer (nlmsghdr + inet_diag_msg). */
const stateOffset = nlmsghdrBytes + 1
const uidOffset = nlmsghdrBytes + 4 + 48 + 12
const answerBytes = uidOffset + 8

/**
 * TCP states (the kernel's numbering, `idiag_state`) in which the socket is a full one with its
 * owner's uid: ESTABLISHED 1, SYN_SENT 2, FIN_WAIT1 4, FIN_WAIT2 5, CLOSE 7, CLOSE_WAIT 8,
 * LAST_ACK 9, CLOSING 11. Not TIME_WAIT (6, a bare record reported as uid 0), SYN_RECV (3) nor
 * LISTEN (10): the same set as the /proc table's.
 */
const ownedStates = new Set([1, 2, 4, 5, 7, 8, 9, 11])

/**
 * Looks the owner of one TCP socket up with the kernel's socket diagnostics (netlink
 * `NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY` without `NLM_F_DUMP`): the kernel finds the socket by
 * its 4-tuple in its connection hash, as it does for an arriving packet, and answers with its
 * state and uid. A lookup costs two system calls and a few microseconds whatever the number of
 * sockets in the namespace, TIME_WAIT ones included, where a pass over /proc/net/tcp formats them
 * all (tens of milliseconds with ten thousand). So it runs on the event loop, and nothing queues:
 * a burst of connections from one uid never delays another's lookup.
 *
 * Node has no netlink socket, so libc's `socket`/`send`/`recv` are called through koffi; see
 * `SockDiag.open` for what happens when that is not possible. No privilege is needed (`ss` reads
 * the same), and the answer concerns the network namespace the daemon runs in.
 */
export class SockDiag {
  readonly #libc: Libc
  readonly #fd: number
  readonly #request = Buffer.alloc(requestBytes)
  readonly #answer = Buffer.alloc(1024)
  #sequence = 0
  #closed = false

  private constructor(libc: Libc, fd: number) {
    this.#libc = libc
    this.#fd = fd
  }

  /**
   * A netlink socket for lookups, or the reason there is none: koffi not installed or not loadable
   * on this platform, or the kernel refusing the socket (no `inet_diag`). Never throws.
   */
  static open(): SockDiag | { problem: string } {
    let libc: Libc
    try {
      libc = loadLibc()
    } catch (error) {
      return { problem: `koffi (FFI) is not loadable: ${(error as Error).message.split('\n')[0]}` }
    }
    const fd = libc.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
    if (fd < 0) return { problem: `socket(AF_NETLINK, NETLINK_SOCK_DIAG) failed (errno ${libc.errno()})` }
    const diag = new SockDiag(libc, fd)
    // A kernel without inet_diag/tcp_diag (not built, or a module that cannot be loaded) answers
    // ENOENT to every lookup, which would read as "no such socket": refuse to serve instead.
    for (const family of [AF_INET, AF_INET6]) {
      const problem = diag.#check(family)
      if (problem !== undefined) {
        diag.close()
        return { problem }
      }
    }
    return diag
  }

  /**
   * Whether the kernel has a TCP diagnostics handler for `family`: a dump of no state at all (the
   * kernel walks nothing) answers DONE where it has, an error where not. Undefined when it has.
   */
  #check(family: number): string | undefined {
    const sequence = this.#write(family, 0, NLM_F_REQUEST | NLM_F_DUMP)
    for (;;) {
      const read = this.#libc.recv(this.#fd, this.#answer, this.#answer.length, MSG_DONTWAIT)
      if (read < nlmsghdrBytes) return `sock_diag recv failed (errno ${this.#libc.errno()})`
      if (get32(this.#answer, 8) !== sequence) continue
      const type = get16(this.#answer, 4)
      if (type === NLMSG_DONE) return undefined
      if (type === NLMSG_ERROR)
        return `the kernel has no TCP socket diagnostics for ${family === AF_INET ? 'IPv4' : 'IPv6'} (errno ${-getSigned32(this.#answer, nlmsghdrBytes)}; inet_diag/tcp_diag)`
    }
  }

  /** Sends one SOCK_DIAG_BY_FAMILY request (TCP, `family`); returns its sequence number. */
  #write(family: number, states: number, flags: number, local?: Endpoint, remote?: Endpoint): number {
    const request = this.#request
    request.fill(0)
    const sequence = (this.#sequence = (this.#sequence + 1) >>> 0)
    put32(request, requestBytes, 0) // nlmsg_len
    put16(request, SOCK_DIAG_BY_FAMILY, 4)
    put16(request, flags, 6)
    put32(request, sequence, 8)
    let at = nlmsghdrBytes
    request.writeUInt8(family, at)
    request.writeUInt8(IPPROTO_TCP, at + 1)
    put32(request, states, at + 4)
    at += 8 // inet_diag_sockid
    if (local !== undefined && remote !== undefined) {
      request.writeUInt16BE(local.port, at)
      request.writeUInt16BE(remote.port, at + 2)
      addressBytes(local.address).copy(request, at + 4)
      addressBytes(remote.address).copy(request, at + 20)
    }
    put32(request, 0xffffffff, at + 40) // idiag_cookie: INET_DIAG_NOCOOKIE
    put32(request, 0xffffffff, at + 44)
    if (this.#libc.send(this.#fd, request, requestBytes, 0) !== requestBytes)
      throw new Error(`sock_diag send failed (errno ${this.#libc.errno()})`)
    return sequence
  }

  /**
   * The owner of the TCP socket whose local end is `local` and remote end `remote` (for a caller:
   * local = the caller's address and port, remote = ours). Also finds an AF_INET6 socket connected
   * to a v4-mapped address (the kernel hashes it by its IPv4 4-tuple). Throws only when the netlink
   * socket fails (closed, or an answer that is not one), never for a socket that is not there.
   */
  ownerOf(local: Endpoint, remote: Endpoint): SocketOwner {
    if (this.#closed) throw new Error('the sock_diag socket is closed')
    const v4 = isIPv4(local.address) && isIPv4(remote.address)
    // idiag_states: any (the state is checked below)
    const sequence = this.#write(v4 ? AF_INET : AF_INET6, 0xffffffff, NLM_F_REQUEST, local, remote)
    // The kernel answers within send(2); a datagram is always waiting by now.
    for (;;) {
      const read = this.#libc.recv(this.#fd, this.#answer, this.#answer.length, MSG_DONTWAIT)
      if (read < nlmsghdrBytes) throw new Error(`sock_diag recv failed (errno ${this.#libc.errno()})`)
      const answer = this.#answer
      if (get32(answer, 8) !== sequence) continue // a stale answer to a lookup that threw
      const type = get16(answer, 4)
      if (type === NLMSG_ERROR) {
        const errno = -getSigned32(answer, nlmsghdrBytes)
        // ENOENT: no such socket (closed already, or never there).
        if (errno === 2) return { uid: undefined, reason: 'no such socket in the kernel (sock_diag)' }
        throw new Error(`sock_diag answered errno ${errno}`)
      }
      if (type !== SOCK_DIAG_BY_FAMILY || read < answerBytes)
        throw new Error(`sock_diag answered an unexpected message (type ${type}, ${read} bytes)`)
      const state = answer.readUInt8(stateOffset)
      if (!ownedStates.has(state))
        return { uid: undefined, reason: `the caller's socket is in TCP state ${state}, which has no owner` }
      return { uid: get32(answer, uidOffset) }
    }
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#libc.close(this.#fd)
  }
}

/** The 16 bytes of `idiag_src`/`idiag_dst`: an IPv4 address in the first 4, network order. */
function addressBytes(address: string): Buffer {
  if (isIPv4(address)) {
    const bytes = Buffer.alloc(16)
    address.split('.').forEach((part, index) => bytes.writeUInt8(Number(part), index))
    return bytes
  }
  return ipv6Bytes(address)
}

const put32 = (b: Buffer, value: number, at: number) =>
  littleEndian ? b.writeUInt32LE(value, at) : b.writeUInt32BE(value, at)
const put16 = (b: Buffer, value: number, at: number) =>
  littleEndian ? b.writeUInt16LE(value, at) : b.writeUInt16BE(value, at)
const get32 = (b: Buffer, at: number) => (littleEndian ? b.readUInt32LE(at) : b.readUInt32BE(at))
const get16 = (b: Buffer, at: number) => (littleEndian ? b.readUInt16LE(at) : b.readUInt16BE(at))
const getSigned32 = (b: Buffer, at: number) => (littleEndian ? b.readInt32LE(at) : b.readInt32BE(at))
