import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { connect, createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Metrics } from '../../sidecar/src/core/metrics.ts'
import { PeerCredentials } from '../../sidecar/src/http/callers/peer-credentials.ts'
import { PeerUids } from '../../sidecar/src/http/callers/peer-uids.ts'
import { SocketTable } from '../../sidecar/src/http/callers/socket-table.ts'
import { startStack } from '../support/stack.ts'
import { cannotSpawnAsOtherUids, requestsAsUid, uids } from './as-uid.ts'
import { twoIdentitiesYaml } from './identities-yaml.ts'

// callers.allow on listen.socket: the peer's uid comes from SO_PEERCRED (peer-credentials.ts),
// recorded by the kernel at connect(2).
const skip = cannotSpawnAsOtherUids()
const linux = process.platform === 'linux' ? undefined : 'needs Linux'
const mgmt = 'https://management.azure.com'

function privateDir(t: { after: (fn: () => void) => void }, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A Unix socket server and one connection to it from this process: the accepted end. */
async function acceptedUnixConnection(t: { after: (fn: () => void) => void }): Promise<Socket> {
  const path = join(privateDir(t, 'sidecar-peercred-'), 's.sock')
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(path, resolve))
  t.after(() => server.close())
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve))
  const client = connect(path)
  t.after(() => client.destroy())
  return accepted
}

test('SO_PEERCRED names the uid that connected', { skip: linux }, async (t) => {
  const lookup = PeerCredentials.open()
  assert.ok(lookup instanceof PeerCredentials, JSON.stringify(lookup))
  const socket = await acceptedUnixConnection(t)
  assert.deepEqual(lookup.ownerOf(socket), { uid: process.getuid!() })
  socket.destroy()
  await new Promise((resolve) => setImmediate(resolve))
  const closed = lookup.ownerOf(socket)
  assert.equal(closed.uid, undefined, 'a closed connection has no owner')
})

test('where SO_PEERCRED cannot be read, a Unix socket caller is unknown (refused), with the reason', async (t) => {
  const table = new SocketTable({ backend: 'proc' })
  t.after(() => table.close())
  const peers = new PeerUids(table, new Metrics(), {
    openPeerCredentials: () => ({ problem: 'koffi (FFI) is not loadable: test' }),
  })
  const socket = await acceptedUnixConnection(t)
  peers.rememberUnix(socket)
  await peers.settled(socket)
  assert.deepEqual(peers.ownerOf(socket), {
    uid: undefined,
    reason: 'SO_PEERCRED unavailable: koffi (FFI) is not loadable: test',
  })
})

test(
  'listen.socket with callers.allow: each uid connecting to the Unix socket gets its identities and only those',
  { skip },
  async (t) => {
    const dir = privateDir(t, 'sidecar-unix-allow-')
    chmodSync(dir, 0o755)
    const socketPath = join(dir, 'sidecar.sock')
    const stack = await startStack(t, {
      listenYaml: `  socket: ${socketPath}\n`,
      configYaml: (emulator) =>
        [
          'callers:',
          '  allow:',
          `    - uid: ${uids.alice}`,
          '      identities: [mi]',
          ...twoIdentitiesYaml(emulator),
        ].join('\n'),
    })
    // The daemon makes the socket 0660; an operator may open it to every local user, and
    // callers.allow still decides who gets which identity.
    chmodSync(socketPath, 0o666)
    const url = (path: string) => `http://localhost${path}`
    const [mi, two] = await requestsAsUid(
      uids.alice,
      [url(`/token?resource=${mgmt}`), url(`/token?resource=${mgmt}&identity=two`)],
      { Metadata: 'true' },
      { socketPath },
    )
    assert.equal(mi!.status, 200, JSON.stringify(mi!.body))
    assert.equal(mi!.body.identity, 'mi')
    assert.equal(two!.status, 403)
    assert.match(two!.body.error_description, new RegExp(`uid ${uids.alice} may not use identity "two"`))

    const [mallory] = await requestsAsUid(
      uids.mallory,
      [url(`/token?resource=${mgmt}`)],
      { Metadata: 'true' },
      { socketPath },
    )
    assert.equal(mallory!.status, 403)
    assert.match(
      mallory!.body.error_description,
      new RegExp(`uid ${uids.mallory} is not listed in callers\\.allow`),
    )
    // Only alice's one allowed request reached upstream.
    assert.equal(stack.emulator.state.calls.count('imds.token'), 1)
  },
)
