import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createServer, connect, type Server, type Socket } from 'node:net'
import type { SocketOwner } from '../../sidecar/src/http/callers/socket-owner.ts'
import { SocketTable } from '../../sidecar/src/http/callers/socket-table.ts'
import { becomeUid, cannotSpawnAsOtherUids, uids } from './as-uid.ts'

// The two ways of looking a caller's uid up (socket-table.ts) must answer alike: the /proc scan and
// the kernel's sock_diag (netlink through koffi), each on real loopback connections.
const linux = process.platform === 'linux' ? undefined : 'needs Linux'
const otherUids = cannotSpawnAsOtherUids()

function tables(t: { after: (fn: () => Promise<void>) => void }) {
  const proc = new SocketTable({ backend: 'proc' })
  const sockDiag = new SocketTable({ backend: 'sock-diag' })
  t.after(() => proc.close())
  t.after(() => sockDiag.close())
  return { proc, sockDiag }
}

async function listening(
  t: { after: (fn: () => void) => void },
  host: string,
): Promise<{ server: Server; port: number }> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, resolve))
  t.after(() => server.close())
  return { server, port: (server.address() as { port: number }).port }
}

/** A loopback connection from this process: the accepted end's peer (the caller) and local end. */
async function loopbackConnection(t: { after: (fn: () => void) => void }) {
  const { server, port } = await listening(t, '127.0.0.1')
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve))
  const client = connect(port, '127.0.0.1')
  t.after(() => client.destroy())
  const socket = await accepted
  return {
    peer: { address: socket.remoteAddress!, port: socket.remotePort! },
    local: { address: socket.localAddress!, port: socket.localPort! },
  }
}

async function ownersOf(
  socket: Socket,
  { proc, sockDiag }: ReturnType<typeof tables>,
): Promise<[SocketOwner, SocketOwner]> {
  const peer = { address: socket.remoteAddress!, port: socket.remotePort! }
  const local = { address: socket.localAddress!, port: socket.localPort! }
  return [await proc.ownerOf(peer, local), await sockDiag.ownerOf(peer, local)]
}

test(
  'sock-diag is usable here (koffi loads, the kernel answers) and `auto` picks it',
  { skip: linux },
  async (t) => {
    const { sockDiag, proc } = tables(t)
    assert.equal(sockDiag.sockDiagProblem, undefined)
    assert.equal(sockDiag.backend, 'sock-diag')
    assert.equal(proc.backend, 'proc')
    const auto = new SocketTable()
    t.after(() => auto.close())
    assert.equal(auto.backend, 'sock-diag')
  },
)

for (const [name, host, connectHost] of [
  ['IPv4', '127.0.0.1', '127.0.0.1'],
  ['IPv6', '::1', '::1'],
  ['dual-stack (an AF_INET6 socket to ::ffff:127.0.0.1)', '127.0.0.1', '::ffff:127.0.0.1'],
] as const) {
  test(
    `${name}: both backends find this process's uid, and nothing for a wrong port`,
    { skip: linux },
    async (t) => {
      const both = tables(t)
      const { server, port } = await listening(t, host)
      const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve))
      const client = connect(port, connectHost)
      t.after(() => client.destroy())
      const socket = await accepted
      const uid = process.getuid!()
      assert.deepEqual(await ownersOf(socket, both), [{ uid }, { uid }])
      const wrong = { address: socket.remoteAddress!, port: socket.remotePort! === 1 ? 2 : 1 }
      const local = { address: socket.localAddress!, port: socket.localPort! }
      assert.equal((await both.proc.ownerOf(wrong, local)).uid, undefined)
      assert.equal((await both.sockDiag.ownerOf(wrong, local)).uid, undefined)
    },
  )
}

test(
  'a caller that already closed (its socket in FIN_WAIT or gone) is never taken as root',
  { skip: linux },
  async (t) => {
    const both = tables(t)
    const { server, port } = await listening(t, '127.0.0.1')
    const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve))
    const client = connect(port, '127.0.0.1')
    const socket = await accepted
    const peer = { address: socket.remoteAddress!, port: socket.remotePort! }
    const local = { address: socket.localAddress!, port: socket.localPort! }
    client.resetAndDestroy() // RST: the caller's socket is gone at once
    await new Promise((resolve) => socket.once('close', resolve).on('error', () => {}))
    for (const table of [both.proc, both.sockDiag]) {
      const owner = await table.ownerOf(peer, local)
      assert.equal(owner.uid, undefined, table.backend)
      assert.ok(owner.reason.length > 0)
    }
  },
)

/** Connects as `uid` to 127.0.0.1:port (or connectHost) and stays connected until the server closes. */
function connectAsUid(uid: number, port: number, connectHost: string): Promise<void> {
  const script = `${becomeUid}
const socket = require('node:net').connect(${port}, ${JSON.stringify(connectHost)})
socket.on('data', () => {}).on('close', () => process.exit(0)).on('error', () => process.exit(1))
`
  return new Promise((resolve, reject) =>
    execFile(
      process.execPath,
      ['-e', script],
      { cwd: '/', timeout: 20_000, env: { SIDECAR_TEST_UID: String(uid) } },
      (error) => (error ? reject(error) : resolve()),
    ),
  )
}

for (const [name, connectHost] of [
  ['IPv4', '127.0.0.1'],
  ['dual-stack', '::ffff:127.0.0.1'],
] as const) {
  test(`another uid's connection (${name}): both backends name that uid`, { skip: otherUids }, async (t) => {
    const both = tables(t)
    const { server, port } = await listening(t, '127.0.0.1')
    const owners = new Promise<[SocketOwner, SocketOwner]>((resolve, reject) =>
      server.once('connection', (socket) => {
        ownersOf(socket, both)
          .then(resolve, reject)
          .finally(() => socket.destroy())
      }),
    )
    const child = connectAsUid(uids.alice, port, connectHost)
    assert.deepEqual(await owners, [{ uid: uids.alice }, { uid: uids.alice }])
    await child
  })
}

test('sock-diag answers in microseconds whatever the size of the table', { skip: linux }, async (t) => {
  const { sockDiag } = tables(t)
  const { peer, local } = await loopbackConnection(t)
  const started = performance.now()
  for (let i = 0; i < 1000; i++) assert.equal((await sockDiag.ownerOf(peer, local)).uid, process.getuid!())
  const perLookupMs = (performance.now() - started) / 1000
  t.diagnostic(`sock-diag: ${(perLookupMs * 1000).toFixed(1)} µs per lookup`)
  assert.ok(perLookupMs < 1, `${perLookupMs} ms per lookup`)
})

test(
  'where sock-diag cannot be opened, `auto` scans /proc and `sock-diag` refuses with the reason',
  { skip: linux },
  async (t) => {
    const openSockDiag = () => ({ problem: 'koffi (FFI) is not loadable: test' })
    const told: unknown[] = []
    const auto = new SocketTable({ openSockDiag, onBackendChosen: (...said) => told.push(said) })
    const strict = new SocketTable({ backend: 'sock-diag', openSockDiag })
    t.after(() => auto.close())
    t.after(() => strict.close())
    assert.equal(auto.backend, 'proc')
    assert.equal(auto.sockDiagProblem, 'koffi (FFI) is not loadable: test')
    // Told once (the operator's log line), however many lookups follow.
    assert.equal(auto.backend, 'proc')
    assert.deepEqual(told, [['proc', 'koffi (FFI) is not loadable: test']])
    const { peer, local } = await loopbackConnection(t)
    assert.deepEqual(await auto.ownerOf(peer, local), { uid: process.getuid!() })
    const refused = await strict.ownerOf(peer, local)
    assert.equal(refused.uid, undefined)
    assert.match(
      refused.uid === undefined ? refused.reason : '',
      /sock_diag unavailable: koffi \(FFI\) is not loadable/,
    )
  },
)
