import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { chmodSync, copyFileSync, linkSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Writable } from 'node:stream'
import { runDoctor } from '../../sidecar/src/cli/doctor.ts'
import { probeImdsAsOtherUid } from '../../sidecar/src/cli/imds-lockdown-probe.ts'
import { parseConfig } from '../../sidecar/src/config/load.ts'
import { SocketTable } from '../../sidecar/src/http/callers/socket-table.ts'
import { startEmulator } from '../support/emulator.ts'
import { startStack } from '../support/stack.ts'
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
    const owners: (number | undefined)[] = []
    const table = new SocketTable()
    const server = createServer((socket) => {
      connections++
      void table
        .ownerOf(
          { address: socket.remoteAddress!, port: socket.remotePort! },
          { address: socket.localAddress!, port: socket.localPort! },
        )
        .then((owner) => {
          owners.push(owner.uid)
          socket.destroy()
        })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.after(() => server.close())
    const port = (server.address() as { port: number }).port
    assert.deepEqual(await probeImdsAsOtherUid(`http://127.0.0.1:${port}`), { kind: 'reachable', uid: 65534 })
    assert.equal(connections, 1)
    assert.deepEqual(owners, [65534], 'the connection was opened as uid 65534, not root')
    // Wait for the listener to be closed rather than a fixed 50 ms.
    await new Promise<void>((resolve) => server.close(() => resolve()))
    assert.deepEqual(await probeImdsAsOtherUid(`http://127.0.0.1:${port}`, { uid: 64103, timeoutMs: 500 }), {
      kind: 'unreachable',
      uid: 64103,
      detail: 'ECONNREFUSED',
    })
  },
)

test(
  "the probe tells a redirect to the sidecar: a credential-sidecar answers in IMDS's place",
  { skip },
  async (t) => {
    const stack = await startStack(t)
    assert.deepEqual(await probeImdsAsOtherUid(stack.url), { kind: 'redirected', uid: 65534 })
    // doctor itself, when a sidecar answers its own uid at the IMDS endpoint.
    const out = new Collect()
    const config = parseConfig(
      `upstream:\n  imdsEndpoint: ${stack.url}\nidentities:\n  mi:\n    managedIdentity: {}\n`,
      {
        source: 'doctor.yaml',
      },
    )
    await runDoctor(config, out)
    assert.match(
      out.text,
      /note {2}a credential-sidecar answers this uid at http:\/\/127\.0\.0\.1:\d+ \(its IMDS traffic is redirected\)/,
    )
    assert.match(
      out.text,
      /ok {4}uid 65534's requests to .* are answered by the sidecar: the redirect is in place/,
    )
  },
)

test('the probe works from a checkout other uids cannot enter (a 0700 directory)', { skip }, async (t) => {
  const hidden = mkdtempSync(join(tmpdir(), 'sidecar-0700-'))
  t.after(() => rmSync(hidden, { recursive: true, force: true }))
  chmodSync(hidden, 0o700)
  const node = join(hidden, 'node')
  try {
    linkSync(process.execPath, node)
  } catch {
    copyFileSync(process.execPath, node)
  }
  const server = createServer((socket) => socket.destroy())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => server.close())
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  const probe = new URL('../../sidecar/src/cli/imds-lockdown-probe.ts', import.meta.url).href
  const { stdout } = await promisify(execFile)(node, [
    '--input-type=module',
    '-e',
    `import { probeImdsAsOtherUid } from ${JSON.stringify(probe)}; console.log(JSON.stringify(await probeImdsAsOtherUid(${JSON.stringify(url)})))`,
  ])
  assert.deepEqual(JSON.parse(stdout), { kind: 'reachable', uid: 65534 })
})
