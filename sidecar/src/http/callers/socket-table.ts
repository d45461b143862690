import { isIPv4, isIPv6 } from 'node:net'
import { endianness } from 'node:os'
import { join } from 'node:path'
import { ipv6Bytes } from './ipv6-bytes.ts'
import { PerTurnQueue } from './per-turn-queue.ts'
import { SockDiag } from './sock-diag.ts'
import type { Endpoint, SocketOwner } from './socket-owner.ts'
import { TableScanner } from './table-scanner.ts'

/**
 * How owners are looked up: `sock-diag` asks the kernel for the one socket (netlink, through the
 * optional koffi dependency: microseconds); `proc` scans /proc/net/tcp{,6} on a worker thread (in
 * proportion to every socket of the namespace); `auto` uses sock-diag when it can be opened, else
 * proc.
 */
export type SocketTableBackend = 'proc' | 'sock-diag' | 'auto'

export interface SocketTableOptions {
  /** `auto` (default): sock-diag where koffi loads and the kernel answers, else proc. */
  backend?: SocketTableBackend
  /** Opens the netlink socket (`SockDiag.open`); tests stand a failing one in. */
  openSockDiag?: () => SockDiag | { problem: string }
  /** proc backend: where `net/tcp` and `net/tcp6` are read from; `/proc` (this process's network namespace). */
  procRoot?: string
  /** Bytes asked for per read(2) (64 KiB; the kernel answers about a page at a time). */
  chunkBytes?: number
  /** proc backend: the scanner thread's niceness (10, below the event loop's). */
  scannerNice?: number
  /** Little- or big-endian host: how the kernel prints each 32-bit word of an address. */
  endianness?: 'LE' | 'BE'
  /**
   * Where callers that a packet redirect (nftables `nat output`, deploy/nftables/imds-redirect.nft)
   * sends to the sidecar believe they are connected: Azure IMDS, 169.254.169.254:80.
   */
  redirectedFrom?: Endpoint
  /**
   * Told once, at the first lookup, which lookup serves: an operator sees in the log when `auto`
   * fell back to the /proc scan (new connections then cost milliseconds, not microseconds).
   */
  onBackendChosen?: (backend: 'proc' | 'sock-diag', problem: string | undefined) => void
  /**
   * The daemon's own uid (`process.getuid()`): the redirect exempts it, so a redirected connection
   * is never its own; an entry that says so is another connection's and is not trusted.
   */
  ownUid?: number
}

/** Azure IMDS, where the redirect recipe catches other uids' traffic. */
export const imdsPeer: Endpoint = { address: '169.254.169.254', port: 80 }

/**
 * TCP states in which the kernel still holds a full socket with its owner's uid. A TIME_WAIT entry
 * (06) is a bare timewait record that the kernel prints with uid 0: trusting it would turn a
 * caller that closed early into root. SYN_RECV (03) and LISTEN (0A) are never the caller's end.
 */
const ownedStates = new Set(['01', '02', '04', '05', '07', '08', '09', '0B'])

type TableFile = 'tcp' | 'tcp6'

interface Query {
  needle: string
  resolve: (line: string | undefined) => void
  reject: (error: unknown) => void
}

/** One place the caller's socket may be listed: a table, and the line's addresses in it. */
interface Candidate {
  file: TableFile
  needle: string
  /** `redirected`: the caller's socket names IMDS as its peer (the packet redirect rewrote it). */
  via: 'direct' | 'redirected'
}

/**
 * Finds the uid that owns a local TCP socket by reading the kernel's socket table
 * (`/proc/net/tcp`, `/proc/net/tcp6`) of this process's network namespace: the entry whose local
 * end is the caller's end of a connection we accepted, and whose remote end is ours, carries the
 * uid of the process that created the caller's socket.
 *
 * Where the caller's socket may be listed, most likely first:
 * - directly, in the table of our own socket's family (an IPv4 caller of an IPv4 listener: `tcp`);
 * - an IPv4 connection whose caller opened an AF_INET6 socket and connected to a v4-mapped address
 *   (Java's default, and any dual-stack client): `tcp6`, both ends as `::ffff:a.b.c.d`;
 * - a connection that a packet redirect (nftables `nat output … redirect`, as Istio captures
 *   outbound traffic) sent to us: the caller's socket still names IMDS (169.254.169.254:80) as its
 *   peer, so its line is the one whose local end is the caller's address and port and whose remote
 *   end is IMDS. The 4-tuple makes that socket unique; a line owned by the daemon's own uid (which
 *   the redirect exempts) is another connection's and is not taken.
 * Only when the first place does not have it are the others scanned, so the usual lookup costs
 * one pass.
 *
 * Cost: the kernel formats the table by walking its whole connection hash, so a pass costs in
 * proportion to every TCP socket of the namespace, TIME_WAIT ones included (tens of milliseconds
 * with ten thousand). Hence: passes run on a worker thread (table-scanner.ts), never blocking the
 * event loop; a pass stops once every entry it looks for is found; and lookups that arrive while
 * a pass runs are answered together by the next one, so a burst of new connections costs a couple
 * of passes rather than one each. This is the fallback: where koffi loads and the kernel has
 * TCP diagnostics, `sock-diag` looks the one socket up directly (sock-diag.ts).
 */
export class SocketTable {
  readonly #backend: SocketTableBackend
  readonly #openSockDiag: () => SockDiag | { problem: string }
  readonly #diagLookups = new PerTurnQueue({ perTurn: 32 })
  /** sock-diag: undefined until first used; then the netlink socket, or why there is none. */
  #diag: SockDiag | { problem: string } | undefined
  readonly #procRoot: string
  readonly #scanner: TableScanner
  readonly #endianness: 'LE' | 'BE'
  readonly #redirectedFrom: Endpoint
  readonly #ownUid: number | undefined
  readonly #onBackendChosen: SocketTableOptions['onBackendChosen']
  readonly #waiting = { tcp: [] as Query[], tcp6: [] as Query[] }
  readonly #scanning = { tcp: false, tcp6: false }

  constructor(options: SocketTableOptions = {}) {
    this.#backend = options.backend ?? 'auto'
    this.#openSockDiag = options.openSockDiag ?? (() => SockDiag.open())
    this.#procRoot = options.procRoot ?? '/proc'
    this.#scanner = new TableScanner({
      ...(options.chunkBytes === undefined ? {} : { chunkBytes: options.chunkBytes }),
      ...(options.scannerNice === undefined ? {} : { nice: options.scannerNice }),
    })
    this.#endianness = options.endianness ?? endianness()
    this.#redirectedFrom = options.redirectedFrom ?? imdsPeer
    this.#ownUid = options.ownUid
    this.#onBackendChosen = options.onBackendChosen
  }

  /** Which lookup serves: `sock-diag`, or `proc` (also when `auto` could not open sock-diag). */
  get backend(): 'proc' | 'sock-diag' {
    return this.#sockDiag() instanceof SockDiag ? 'sock-diag' : 'proc'
  }

  /** Why sock-diag is not used (undefined when it is, or when `proc` was asked for). */
  get sockDiagProblem(): string | undefined {
    const diag = this.#sockDiag()
    return diag === undefined || diag instanceof SockDiag ? undefined : diag.problem
  }

  /** The owner of the socket at `peer` that is connected to `local`. Never rejects. */
  async ownerOf(peer: Endpoint, local: Endpoint): Promise<SocketOwner> {
    const diag = this.#sockDiag()
    if (diag instanceof SockDiag) {
      // A few dozen lookups per event-loop turn: a wave of hundreds of new connections is looked
      // up over several turns, with the requests of connections already known served in between.
      const answer = await new Promise<SocketOwner | Error>((resolve) =>
        this.#diagLookups.defer(() => {
          if (this.#diag !== diag) return resolve({ uid: undefined, reason: 'the socket table was closed' })
          try {
            resolve(this.#ownerByDiag(diag, peer, local))
          } catch (error) {
            resolve(error as Error)
          }
        }),
      )
      if (!(answer instanceof Error)) return answer
      // The netlink socket itself failed: never expected; stop using it.
      diag.close()
      this.#diag = { problem: answer.message }
    }
    if (diag !== undefined && this.#backend === 'sock-diag') {
      return { uid: undefined, reason: `sock_diag unavailable: ${this.sockDiagProblem ?? 'unknown'}` }
    }
    return this.#ownerByProc(peer, local)
  }

  /** The netlink socket, opened on first use (koffi is loaded only then); undefined for `proc`. */
  #sockDiag(): SockDiag | { problem: string } | undefined {
    if (this.#backend === 'proc') return undefined
    if (this.#diag === undefined) {
      this.#diag = this.#openSockDiag()
      const opened = this.#diag instanceof SockDiag
      this.#onBackendChosen?.(
        opened || this.#backend === 'sock-diag' ? 'sock-diag' : 'proc',
        this.sockDiagProblem,
      )
    }
    return this.#diag
  }

  /**
   * sock-diag: the same places as the proc scan, each one exact lookup. The kernel finds a
   * dual-stack caller's AF_INET6 socket by its IPv4 4-tuple, so a v4 connection needs one lookup,
   * and a second (the caller's socket naming IMDS) only when the first finds nothing.
   */
  #ownerByDiag(diag: SockDiag, peer: Endpoint, local: Endpoint): SocketOwner {
    const peerV4 = mappedV4(peer.address)
    const localV4 = mappedV4(local.address)
    if (peerV4 !== undefined && localV4 !== undefined) {
      const caller = { address: peerV4, port: peer.port }
      const direct = diag.ownerOf(caller, { address: localV4, port: local.port })
      if (direct.uid !== undefined || !direct.reason.startsWith('no such socket')) return direct
      const origin = this.#redirectedFrom
      const redirected = diag.ownerOf(caller, origin)
      if (redirected.uid !== undefined && redirected.uid === this.#ownUid) {
        return {
          uid: undefined,
          reason: `the only socket connected to ${origin.address}:${origin.port} from the caller's port is the sidecar's own`,
        }
      }
      return redirected.uid !== undefined ? redirected : direct
    }
    if (isIPv6(peer.address) && isIPv6(local.address)) return diag.ownerOf(peer, local)
    return { uid: undefined, reason: `unsupported address family (${peer.address})` }
  }

  async #ownerByProc(peer: Endpoint, local: Endpoint): Promise<SocketOwner> {
    const stages = this.#candidates(peer, local)
    if (stages.length === 0) return { uid: undefined, reason: `unsupported address family (${peer.address})` }
    let problem = 'no entry in the kernel socket table'
    for (const [at, stage] of stages.entries()) {
      const lines = await Promise.all(
        stage.map((candidate) =>
          this.#find(candidate.file, candidate.needle).catch((error: Error) => {
            // The later places are fallbacks: a host without IPv6 has no tcp6, and that is no news.
            if (at === 0) problem = `cannot read ${this.#path(candidate.file)} (${error.message})`
            return undefined
          }),
        ),
      )
      for (const [index, candidate] of stage.entries()) {
        const line = lines[index]
        if (line === undefined) continue
        const owner = ownerFromLine(line)
        if (candidate.via === 'redirected' && owner.uid !== undefined && owner.uid === this.#ownUid) {
          problem = `the only socket connected to ${this.#redirectedFrom.address}:${this.#redirectedFrom.port} from the caller's port is the sidecar's own`
          continue
        }
        return owner
      }
    }
    return { uid: undefined, reason: problem }
  }

  #path(file: TableFile): string {
    return join(this.#procRoot, 'net', file)
  }

  /** Queues a lookup; a scan already under way may have passed its entry, so it waits for the next. */
  #find(file: TableFile, needle: string): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      this.#waiting[file].push({ needle, resolve, reject })
      // Started on the next tick, so lookups queued together share one pass.
      if (!this.#scanning[file]) {
        this.#scanning[file] = true
        queueMicrotask(() => void this.#scanLoop(file))
      }
    })
  }

  async #scanLoop(file: TableFile): Promise<void> {
    while (this.#waiting[file].length > 0) {
      const batch = this.#waiting[file].splice(0)
      try {
        const lines = await this.#scanner.scan(
          this.#path(file),
          batch.map((query) => query.needle),
        )
        batch.forEach((query, index) => query.resolve(lines[index] ?? undefined))
      } catch (error) {
        for (const query of batch) query.reject(error)
      }
    }
    this.#scanning[file] = false
  }

  /** Ends the scanning thread (it also ends by itself when idle) and the netlink socket. */
  close(): Promise<void> {
    if (this.#diag instanceof SockDiag) this.#diag.close()
    this.#diag = undefined
    return this.#scanner.close()
  }

  /** Where to look for the caller's socket, in stages (see the class comment), needles encoded. */
  #candidates(peer: Endpoint, local: Endpoint): Candidate[][] {
    const peerV4 = mappedV4(peer.address)
    const localV4 = mappedV4(local.address)
    const line = (peerHex: string, remote: string, remotePort: number): string =>
      ` ${peerHex}:${portHex(peer.port)} ${remote}:${portHex(remotePort)} `
    if (peerV4 !== undefined && localV4 !== undefined) {
      const peer4 = this.#v4Hex(peerV4)
      const peer6 = this.#v6Hex(`::ffff:${peerV4}`)
      const origin = this.#redirectedFrom
      return [
        [{ file: 'tcp', needle: line(peer4, this.#v4Hex(localV4), local.port), via: 'direct' }],
        [
          {
            file: 'tcp6',
            needle: line(peer6, this.#v6Hex(`::ffff:${localV4}`), local.port),
            via: 'direct',
          },
          {
            file: 'tcp',
            needle: line(peer4, this.#v4Hex(origin.address), origin.port),
            via: 'redirected',
          },
          {
            file: 'tcp6',
            needle: line(peer6, this.#v6Hex(`::ffff:${origin.address}`), origin.port),
            via: 'redirected',
          },
        ],
      ]
    }
    if (isIPv6(peer.address) && isIPv6(local.address)) {
      const needle = line(this.#v6Hex(peer.address), this.#v6Hex(local.address), local.port)
      return [[{ file: 'tcp6', needle, via: 'direct' }]]
    }
    return []
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
