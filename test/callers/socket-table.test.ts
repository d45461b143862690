import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, connect, type Socket } from 'node:net'
import { getPriority, tmpdir } from 'node:os'
import { join } from 'node:path'
import { ipv6Bytes } from '../../sidecar/src/http/callers/ipv6-bytes.ts'
import { SocketTable } from '../../sidecar/src/http/callers/socket-table.ts'

const header =
  '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n'

/** A fake /proc with the given net/tcp and net/tcp6 bodies (header added). */
function procWith(tables: { tcp?: string[]; tcp6?: string[] }): string {
  const root = mkdtempSync(join(tmpdir(), 'sidecar-proc-'))
  mkdirSync(join(root, 'net'))
  for (const [file, lines] of Object.entries(tables))
    writeFileSync(join(root, 'net', file), header + lines.join('\n') + '\n')
  return root
}

/** One table line; fields after uid as the kernel prints them. */
function line(sl: number, local: string, remote: string, state: string, uid: number): string {
  return `  ${sl}: ${local} ${remote} ${state} 00000000:00000000 00:00000000 00000000 ${String(uid).padStart(5)}        0 ${40000 + sl} 1 0000000000000000 20 4 30 10 -1`
}

// 127.0.0.1:40000 (caller) ↔ 127.0.0.1:7780 (sidecar), as a little-endian kernel prints them.
const caller = { address: '127.0.0.1', port: 40000 }
const sidecar = { address: '127.0.0.1', port: 7780 }
const v4Lines = [
  line(0, '0100007F:1E64', '00000000:0000', '0A', 999), // the sidecar listening
  line(1, '0100007F:1E64', '0100007F:9C40', '01', 999), // the sidecar's end of the connection
  line(2, '0100007F:9C40', '0100007F:1E64', '01', 1000), // the caller's end: this one
]

test('IPv4: the caller end of the connection carries the uid (not the listener, not our end)', async () => {
  const table = new SocketTable({ backend: 'proc', procRoot: procWith({ tcp: v4Lines }), endianness: 'LE' })
  assert.deepEqual(await table.ownerOf(caller, sidecar), { uid: 1000 })
  assert.deepEqual(await table.ownerOf(sidecar, caller), { uid: 999 }, 'the mirror image is our own socket')
  assert.equal((await table.ownerOf({ ...caller, port: 40001 }, sidecar)).uid, undefined)
})

test('a big-endian kernel prints the address bytes in network order', async () => {
  const table = new SocketTable({
    backend: 'proc',
    procRoot: procWith({ tcp: [line(0, '7F000001:9C40', '7F000001:1E64', '01', 42)] }),
    endianness: 'BE',
  })
  assert.deepEqual(await table.ownerOf(caller, sidecar), { uid: 42 })
})

test('the scan works across chunk boundaries, whatever the chunk size', async () => {
  const procRoot = procWith({
    tcp: [
      ...Array.from({ length: 50 }, (_, i) =>
        line(
          10 + i,
          '0100007F:0050',
          `0A000001:${(1000 + i).toString(16).toUpperCase().padStart(4, '0')}`,
          '01',
          5,
        ),
      ),
      ...v4Lines,
    ],
  })
  for (const chunkBytes of [1, 7, 64, 150, 151, 4096]) {
    assert.deepEqual(
      await new SocketTable({ backend: 'proc', procRoot, chunkBytes, endianness: 'LE' }).ownerOf(
        caller,
        sidecar,
      ),
      { uid: 1000 },
      `chunk ${chunkBytes}`,
    )
  }
})

test('TIME_WAIT entries are printed with uid 0 by the kernel: never taken as root', async () => {
  const table = new SocketTable({
    backend: 'proc',
    procRoot: procWith({ tcp: [line(0, '0100007F:9C40', '0100007F:1E64', '06', 0)] }),
    endianness: 'LE',
  })
  const owner = await table.ownerOf(caller, sidecar)
  assert.equal(owner.uid, undefined)
  assert.match(owner.uid === undefined ? owner.reason : '', /TCP state 06/)
})

test('IPv6: four host-order words; a v4-mapped peer is looked for in tcp, then as v4-mapped in tcp6', async () => {
  const procRoot = procWith({
    tcp: [],
    tcp6: [
      // [::1]:40000 → [::1]:7780
      line(0, '00000000000000000000000001000000:9C40', '00000000000000000000000001000000:1E64', '01', 7),
      // [::ffff:127.0.0.1]:40001 → [::ffff:127.0.0.1]:7780 (an AF_INET6 client using a mapped address)
      line(1, '0000000000000000FFFF00000100007F:9C41', '0000000000000000FFFF00000100007F:1E64', '01', 8),
    ],
  })
  const table = new SocketTable({ backend: 'proc', procRoot, endianness: 'LE' })
  assert.deepEqual(await table.ownerOf({ address: '::1', port: 40000 }, { address: '::1', port: 7780 }), {
    uid: 7,
  })
  assert.deepEqual(
    await table.ownerOf(
      { address: '::ffff:127.0.0.1', port: 40001 },
      { address: '::ffff:127.0.0.1', port: 7780 },
    ),
    { uid: 8 },
  )
  const dualStack = new SocketTable({
    backend: 'proc',
    procRoot: procWith({ tcp: v4Lines, tcp6: [] }),
    endianness: 'LE',
  })
  assert.deepEqual(
    await dualStack.ownerOf(
      { address: '::ffff:127.0.0.1', port: 40000 },
      { address: '::ffff:127.0.0.1', port: 7780 },
    ),
    { uid: 1000 },
    'a plain IPv4 client of a dual-stack listener',
  )
})

test('dual stack: an IPv4 connection whose caller socket is AF_INET6 is found in tcp6', async () => {
  // The sidecar's end is plain IPv4 (tcp); the caller connected an AF_INET6 socket to ::ffff:127.0.0.1.
  const table = new SocketTable({
    backend: 'proc',
    procRoot: procWith({
      tcp: [line(0, '0100007F:1E64', '0100007F:9C40', '01', 999)],
      tcp6: [
        line(0, '0000000000000000FFFF00000100007F:9C40', '0000000000000000FFFF00000100007F:1E64', '01', 1001),
      ],
    }),
    endianness: 'LE',
  })
  assert.deepEqual(await table.ownerOf(caller, sidecar), { uid: 1001 })
})

test('redirected: the caller socket names IMDS (169.254.169.254:80) as its peer', async () => {
  // The caller (10.1.0.4:40000) connected to IMDS; nftables redirected it to 127.0.0.1:7780.
  const vmCaller = { address: '10.1.0.4', port: 40000 }
  const imdsHex = 'FEA9FEA9:0050'
  const procRoot = procWith({
    tcp: [
      line(0, '0100007F:1E64', '0400010A:9C40', '01', 999), // the sidecar's end
      line(1, '0400010A:9C41', `${imdsHex}`, '01', 999), // the sidecar's own IMDS call, another port
      line(2, '0400010A:9C40', `${imdsHex}`, '01', 1002), // the caller's end: this one
    ],
    tcp6: [
      line(0, '0000000000000000FFFF00000400010A:9C42', `0000000000000000FFFF0000${imdsHex}`, '01', 1003),
    ],
  })
  const table = new SocketTable({ backend: 'proc', procRoot, endianness: 'LE', ownUid: 999 })
  assert.deepEqual(await table.ownerOf(vmCaller, sidecar), { uid: 1002 })
  assert.deepEqual(
    await table.ownerOf({ ...vmCaller, port: 40002 }, sidecar),
    { uid: 1003 },
    'an AF_INET6 caller of the IMDS address',
  )
  // A line owned by the sidecar itself is never a redirected caller (the recipe exempts its uid).
  const own = await table.ownerOf({ ...vmCaller, port: 40001 }, sidecar)
  assert.equal(own.uid, undefined)
  assert.match(own.uid === undefined ? own.reason : '', /sidecar's own/)
  // A direct connection is preferred: tcp is scanned for it first.
  const both = new SocketTable({
    backend: 'proc',
    procRoot: procWith({
      tcp: [
        line(0, '0100007F:9C40', '0100007F:1E64', '01', 1000),
        line(1, '0100007F:9C40', imdsHex, '01', 1004),
      ],
    }),
    endianness: 'LE',
  })
  assert.deepEqual(await both.ownerOf(caller, sidecar), { uid: 1000 })
})

test('a missing table and an unknown address are reasons, not exceptions', async () => {
  const empty = new SocketTable({ backend: 'proc', procRoot: mkdtempSync(join(tmpdir(), 'sidecar-proc-')) })
  const owner = await empty.ownerOf(caller, sidecar)
  assert.equal(owner.uid, undefined)
  assert.match(owner.uid === undefined ? owner.reason : '', /cannot read .*tcp \(ENOENT\)/)
  assert.equal((await empty.ownerOf({ address: 'not-an-ip', port: 1 }, sidecar)).uid, undefined)
  // No IPv6 on the host (no tcp6): the fallbacks' absence is not the reason given.
  const v4Only = new SocketTable({ backend: 'proc', procRoot: procWith({ tcp: v4Lines }), endianness: 'LE' })
  const unknown = await v4Only.ownerOf({ ...caller, port: 40009 }, sidecar)
  assert.deepEqual(unknown, { uid: undefined, reason: 'no entry in the kernel socket table' })
})

test('lookups made while a scan runs are answered together by the next scan', async () => {
  const lines = Array.from({ length: 200 }, (_, i) =>
    line(i, `0100007F:${(30000 + i).toString(16).toUpperCase()}`, '0100007F:1E64', '01', 2000 + i),
  )
  const table = new SocketTable({
    backend: 'proc',
    procRoot: procWith({ tcp: lines }),
    chunkBytes: 256,
    endianness: 'LE',
  })
  const owners = await Promise.all(
    Array.from({ length: 200 }, (_, i) => table.ownerOf({ address: '127.0.0.1', port: 30000 + i }, sidecar)),
  )
  assert.deepEqual(
    owners.map((owner) => owner.uid),
    Array.from({ length: 200 }, (_, i) => 2000 + i),
  )
})

test('ipv6Bytes expands :: and dotted quads', () => {
  assert.equal(ipv6Bytes('::1').toString('hex'), '00000000000000000000000000000001')
  assert.equal(ipv6Bytes('fe80::1:2').toString('hex'), 'fe800000000000000000000000010002')
  assert.equal(ipv6Bytes('::ffff:127.0.0.1').toString('hex'), '00000000000000000000ffff7f000001')
  assert.equal(ipv6Bytes('1:2:3:4:5:6:7:8').toString('hex'), '00010002000300040005000600070008')
})

test('the real /proc: a loopback connection from this process is owned by this uid', async (t) => {
  if (process.platform !== 'linux') return t.skip('needs Linux /proc/net/tcp')
  const table = new SocketTable()
  for (const host of ['127.0.0.1', '::1']) {
    const server = createServer()
    const ready = new Promise<void>((resolve, reject) =>
      server.once('error', reject).listen(0, host, resolve),
    )
    const got = new Promise<Socket>((resolve) => server.once('connection', resolve))
    await ready
    const client = connect((server.address() as { port: number }).port, host)
    const socket = await got
    const owner = await table.ownerOf(
      { address: socket.remoteAddress!, port: socket.remotePort! },
      { address: socket.localAddress!, port: socket.localPort! },
    )
    assert.deepEqual(owner, { uid: process.getuid!() }, host)
    client.destroy()
    socket.destroy()
    server.close()
  }
})

test('the proc scanner thread runs at nice 10 (scannerNice): its scans yield the CPU to the event loop', async (t) => {
  if (process.platform !== 'linux') return t.skip('needs Linux /proc')
  const niceOfThreads = () =>
    readdirSync('/proc/self/task').map((tid) => {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'latin1')
      // Fields after the command's closing parenthesis: state is field 3, nice field 19.
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])
    })
  // Earlier tests' scanners may still be idling (30 s): count them.
  const before = niceOfThreads().filter((nice) => nice === 10).length
  const table = new SocketTable({ backend: 'proc', procRoot: procWith({ tcp: v4Lines }), endianness: 'LE' })
  t.after(() => table.close())
  assert.deepEqual(await table.ownerOf(caller, sidecar), { uid: 1000 })
  assert.equal(
    niceOfThreads().filter((nice) => nice === 10).length,
    before + 1,
    'the new scanner thread is at nice 10',
  )
  assert.equal(getPriority(), 0, 'the event loop thread is not')
})
