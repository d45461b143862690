import { closeSync, openSync, readSync } from 'node:fs'
import { isIPv4, isIPv6 } from 'node:net'
import { endianness } from 'node:os'
import { join } from 'node:path'

/** One end of a TCP connection as Node reports it (`socket.remoteAddress`, `socket.remotePort`). */
export interface Endpoint {
  address: string
  port: number
}

/** Who owns a socket, or why that could not be told. */
export type SocketOwner = { uid: number } | { uid: undefined; reason: string }

export interface SocketTableOptions {
  /** Where `net/tcp` and `net/tcp6` are read from; `/proc` (this process's network namespace). */
  procRoot?: string
  /** Bytes read per system call; the table is scanned chunk by chunk and reading stops at the match. */
  chunkBytes?: number
  /** Little- or big-endian host: how the kernel prints each 32-bit word of an address. */
  endianness?: 'LE' | 'BE'
}

/**
 * TCP states in which the kernel still holds a full socket with its owner's uid. A TIME_WAIT entry
 * (06) is a bare timewait record that the kernel prints with uid 0: trusting it would turn a
 * caller that closed early into root. SYN_RECV (03) and LISTEN (0A) are never the caller's end.
 */
const ownedStates = new Set(['01', '02', '04', '05', '07', '08', '09', '0B'])

/**
 * Finds the uid that owns a local TCP socket by reading the kernel's socket table
 * (`/proc/net/tcp`, `/proc/net/tcp6`) of this process's network namespace: the entry whose local
 * end is the caller's end of a connection we accepted, and whose remote end is ours, carries the
 * uid of the process that created the caller's socket. Netlink's sock_diag would avoid the text
 * table but needs native code; the table is read in chunks and the read stops at the match.
 */
export class SocketTable {
  readonly #procRoot: string
  readonly #buffer: Buffer
  readonly #endianness: 'LE' | 'BE'

  constructor(options: SocketTableOptions = {}) {
    this.#procRoot = options.procRoot ?? '/proc'
    this.#buffer = Buffer.allocUnsafe(options.chunkBytes ?? 64 * 1024)
    this.#endianness = options.endianness ?? endianness()
  }

  /**
   * The owner of the socket at `peer` that is connected to `local`. Synchronous on purpose: it
   * runs once per accepted connection, before any request on it is parsed, so no request can
   * overtake its answer.
   */
  ownerOf(peer: Endpoint, local: Endpoint): SocketOwner {
    const candidates = this.#tables(peer.address, local.address)
    if (candidates.length === 0)
      return { uid: undefined, reason: `unsupported address family (${peer.address})` }
    let lastProblem = 'no entry in the kernel socket table'
    for (const { file, peerHex, localHex } of candidates) {
      const needle = ` ${peerHex}:${portHex(peer.port)} ${localHex}:${portHex(local.port)} `
      let line: string | undefined
      try {
        line = this.#findLine(join(this.#procRoot, 'net', file), needle)
      } catch (error) {
        lastProblem = `cannot read ${join(this.#procRoot, 'net', file)} (${(error as NodeJS.ErrnoException).code ?? String(error)})`
        continue
      }
      if (line === undefined) continue
      return ownerFromLine(line)
    }
    return { uid: undefined, reason: lastProblem }
  }

  /** Which table(s) may hold the caller's socket, with both addresses in that table's encoding. */
  #tables(peer: string, local: string): { file: string; peerHex: string; localHex: string }[] {
    const peerV4 = mappedV4(peer)
    const localV4 = mappedV4(local)
    const tables: { file: string; peerHex: string; localHex: string }[] = []
    if (peerV4 !== undefined && localV4 !== undefined) {
      // An IPv4 caller reaching a dual-stack listener: its own socket is plain AF_INET (tcp), unless
      // it too is an AF_INET6 socket using a v4-mapped address (tcp6).
      tables.push({ file: 'tcp', peerHex: this.#v4Hex(peerV4), localHex: this.#v4Hex(localV4) })
      if (isIPv6(peer) || isIPv6(local))
        tables.push({
          file: 'tcp6',
          peerHex: this.#v6Hex(`::ffff:${peerV4}`),
          localHex: this.#v6Hex(`::ffff:${localV4}`),
        })
    } else if (isIPv6(peer) && isIPv6(local)) {
      tables.push({ file: 'tcp6', peerHex: this.#v6Hex(peer), localHex: this.#v6Hex(local) })
    }
    return tables
  }

  /** The kernel prints an IPv4 address as one 32-bit word in host byte order, upper-case hex. */
  #v4Hex(address: string): string {
    return this.#wordsHex(Buffer.from(address.split('.').map(Number)))
  }

  /** IPv6: four 32-bit words, each in host byte order. */
  #v6Hex(address: string): string {
    return this.#wordsHex(ipv6Bytes(address))
  }

  #wordsHex(bytes: Buffer): string {
    let hex = ''
    for (let i = 0; i < bytes.length; i += 4) {
      const word = this.#endianness === 'LE' ? bytes.readUInt32LE(i) : bytes.readUInt32BE(i)
      hex += word.toString(16).toUpperCase().padStart(8, '0')
    }
    return hex
  }

  /** Scans the file chunk by chunk for the line containing `needle`; stops reading once found. */
  #findLine(path: string, needle: string): string | undefined {
    const fd = openSync(path, 'r')
    try {
      let carry = ''
      for (;;) {
        const read = readSync(fd, this.#buffer, 0, this.#buffer.length, null)
        if (read === 0) return undefined
        const text = carry + this.#buffer.toString('latin1', 0, read)
        const at = text.indexOf(needle)
        if (at !== -1) {
          const start = text.lastIndexOf('\n', at) + 1
          let line = text.slice(start)
          // The match's line may continue in the next chunks; its tail holds the uid.
          for (let end = line.indexOf('\n'); end === -1; end = line.indexOf('\n')) {
            const more = readSync(fd, this.#buffer, 0, this.#buffer.length, null)
            if (more === 0) return line
            line += this.#buffer.toString('latin1', 0, more)
          }
          return line.slice(0, line.indexOf('\n'))
        }
        // Keep the unfinished last line: the needle may straddle two chunks.
        carry = text.slice(text.lastIndexOf('\n') + 1)
      }
    } finally {
      closeSync(fd)
    }
  }
}

/** `sl local rem st tx:rx tr:when retrnsmt uid timeout inode …` → the uid, if the socket is owned. */
function ownerFromLine(line: string): SocketOwner {
  const fields = line.trim().split(/\s+/)
  const state = fields[3]
  const uid = Number(fields[7])
  if (state === undefined || !Number.isInteger(uid))
    return { uid: undefined, reason: 'malformed kernel socket table entry' }
  if (!ownedStates.has(state))
    return { uid: undefined, reason: `the caller's socket is in TCP state ${state}, which has no owner` }
  return { uid }
}

function portHex(port: number): string {
  return port.toString(16).toUpperCase().padStart(4, '0')
}

/** `127.0.0.1` → itself; `::ffff:127.0.0.1` → `127.0.0.1`; anything else → undefined. */
function mappedV4(address: string): string | undefined {
  if (isIPv4(address)) return address
  const match = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  return match?.[1] !== undefined && isIPv4(match[1]) ? match[1] : undefined
}

/** The 16 bytes of an IPv6 address (`::` expanded, a trailing dotted quad accepted). */
export function ipv6Bytes(address: string): Buffer {
  let text = address.replace(/%.*$/, '')
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (quad?.[1] !== undefined) {
    const [a, b, c, d] = quad[1].split('.').map(Number) as [number, number, number, number]
    text = `${text.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const headGroups = head === '' ? [] : head.split(':')
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':')
  const zeros = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length
  const groups = [...headGroups, ...Array<string>(zeros).fill('0'), ...tailGroups]
  const bytes = Buffer.alloc(16)
  groups.forEach((group, index) => bytes.writeUInt16BE(Number.parseInt(group, 16) & 0xffff, index * 2))
  return bytes
}
