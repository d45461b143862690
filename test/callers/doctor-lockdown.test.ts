import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { Writable } from 'node:stream'
import { runDoctor } from '../../sidecar/src/cli/doctor.ts'
import { probeImdsAsOtherUid } from '../../sidecar/src/cli/imds-lockdown-probe.ts'
import { parseConfig } from '../../sidecar/src/config/load.ts'
import { startEmulator } from '../support/emulator.ts'
import { cannotSpawnAsOtherUids } from './as-uid.ts'

const skip = cannotSpawnAsOtherUids()

class Collect extends Writable {
  text = ''
  override _write(chunk: Buffer, _e: string, cb: () => void) {
    this.text += chunk.toString()
    cb()
  }
}

test(
  'doctor (as root) reports IMDS reachable by nobody: a failure only with callers.allow',
  { skip },
  async (t) => {
    const emulator = await startEmulator()
    t.after(() => emulator.close())
    const config = (allow: string) =>
      parseConfig(
        `${allow}upstream:\n  imdsEndpoint: ${emulator.imdsUrl}\nidentities:\n  mi:\n    managedIdentity: {}\n`,
        {
          source: 'doctor.yaml',
        },
      )
    const open = new Collect()
    assert.equal(await runDoctor(config(''), open), 0)
    assert.match(
      open.text,
      /IMDS from another uid\n {2}note {2}uid 65534 can reach http:\/\/127\.0\.0\.1:\d+: any local process can ask IMDS itself/,
    )

    const guarded = new Collect()
    assert.equal(
      await runDoctor(config('callers:\n  allow:\n    - uid: 1000\n      identities: [mi]\n'), guarded),
      1,
    )
    assert.match(
      guarded.text,
      /FAIL {2}uid 65534 can reach .*callers\.allow refuses.*Locking IMDS to the sidecar/,
    )
    assert.match(
      guarded.text,
      /all identities work \(checked in [\d.]+ s\)\nIMDS is not locked to the sidecar while callers\.allow is set/,
    )
  },
)

test(
  'the probe runs as the other uid and tells a refused connection from a reachable one',
  { skip },
  async (t) => {
    // A listener that only root's connections would reach is not possible without a firewall; a
    // closed port stands for "not reachable", an open one for "reachable".
    let connections = 0
    const server = createServer((socket) => {
      connections++
      socket.destroy()
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.after(() => server.close())
    const port = (server.address() as { port: number }).port
    assert.deepEqual(await probeImdsAsOtherUid(`http://127.0.0.1:${port}`), { kind: 'reachable', uid: 65534 })
    assert.equal(connections, 1)
    // Wait for the listener to be closed rather than a fixed 50 ms.
    await new Promise<void>((resolve) => server.close(() => resolve()))
    assert.deepEqual(await probeImdsAsOtherUid(`http://127.0.0.1:${port}`, { uid: 64103, timeoutMs: 500 }), {
      kind: 'unreachable',
      uid: 64103,
      detail: 'ECONNREFUSED',
    })
  },
)
