import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ImdsV2BindingCredential } from '../../sidecar/src/credentials/managed-identity/imds-v2-binding.ts'
import { createLogger } from '../../sidecar/src/core/log.ts'
import { SoftwareKeyProvider } from '../../sidecar/src/pki/key-provider.ts'
import { ImdsV2Client } from '../../sidecar/src/upstream/imds/v2.ts'
import { setup } from '../imds-v2/support.ts'

/**
 * The binding store (contract §2): trusted only as a regular file (a symlink to one is fine) owned
 * by the daemon's uid or root and not writable by group or others (and, holding a key, not
 * readable by them); anything else is refused with a log line naming the file and the key, and
 * re-minted. A store that cannot be written (read-only or full filesystem) never stops serving.
 */

const NOBODY = 65534

async function fixture(t: TestContext, path: string) {
  const lines: string[] = []
  const logger = createLogger({ level: 'debug', destination: { write: (l: string) => void lines.push(l) } })
  const { imds, runtime } = await setup(t, { logger })
  const client = new ImdsV2Client({ runtime, imdsEndpoint: imds.url })
  const make = () => {
    const credential = new ImdsV2BindingCredential({
      client,
      keyProvider: new SoftwareKeyProvider(),
      selector: { kind: 'system' },
      runtime,
      identity: 'mi',
      bindingStorePath: path,
      bindingStoreKey: 'identities.mi.bindingStore',
    })
    t.after(() => credential.close())
    return credential
  }
  /** A good store at `path`, written by a first credential. */
  const seed = async () => {
    const first = make()
    const binding = await first.current()
    await first.close()
    return binding
  }
  const logs = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>)
  const issued = () => imds.state.calls.count('imds.issuecredential')
  return { make, seed, logs, issued, lines }
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'hostile-store-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function refusedLine(logs: Record<string, unknown>[], path: string, why: RegExp): Record<string, unknown> {
  const line = logs.find((l) => l['msg'] === 'binding store refused; minting a new binding certificate')
  assert.ok(line, 'a refusal was logged')
  assert.equal(line['path'], path)
  assert.equal(line['key'], 'identities.mi.bindingStore')
  assert.match(String(line['error']), why)
  return line
}

test('a store file another uid owns (a planted rogue store) is refused, never loaded, and replaced', async (t) => {
  const path = join(tempDir(t), 'mi.json')
  const f = await fixture(t, path)
  const planted = await f.seed()
  chownSync(path, NOBODY, NOBODY)
  const restarted = f.make()
  const fresh = await restarted.current()
  assert.notEqual(fresh.binding.x5tS256, planted.binding.x5tS256)
  assert.equal(f.issued(), 2)
  refusedLine(f.logs(), path, /owned by uid 65534/)
  await restarted.close()
  assert.equal(statSync(path).uid, process.getuid!(), 'replaced by the daemon’s own file')
  assert.equal(statSync(path).mode & 0o777, 0o600)
})

for (const mode of [0o644, 0o666, 0o620, 0o604]) {
  test(`a store file of mode 0${mode.toString(8)} is refused and re-minted`, async (t) => {
    const path = join(tempDir(t), 'mi.json')
    const f = await fixture(t, path)
    const before = await f.seed()
    chmodSync(path, mode)
    const fresh = await f.make().current()
    assert.notEqual(fresh.binding.x5tS256, before.binding.x5tS256)
    refusedLine(f.logs(), path, /mode 0/)
  })
}

test('a symlink to a good store file is followed (Kubernetes mounts use them)', async (t) => {
  const dir = tempDir(t)
  const real = join(dir, 'real.json')
  const link = join(dir, 'mi.json')
  const f = await fixture(t, real)
  const before = await f.seed()
  symlinkSync(real, link)
  const f2 = await fixture(t, link)
  // A second fixture has its own IMDS: a reuse shows as no issuecredential there.
  const loaded = f2.make()
  await loaded.prepared()
  assert.equal(loaded.peek()?.binding.x5tS256, before.binding.x5tS256)
  assert.equal(f2.issued(), 0)
})

test('a symlink to a store file another uid owns is refused', async (t) => {
  const dir = tempDir(t)
  const real = join(dir, 'real.json')
  const link = join(dir, 'mi.json')
  const f = await fixture(t, real)
  await f.seed()
  chownSync(real, NOBODY, NOBODY)
  symlinkSync(real, link)
  const f2 = await fixture(t, link)
  const credential = f2.make()
  await credential.prepared()
  assert.equal(credential.peek(), undefined)
  refusedLine(f2.logs(), link, /owned by uid 65534/)
})

test('a FIFO at the store path is refused at once (no blocked open), and a binding is minted', async (t) => {
  const path = join(tempDir(t), 'mi.json')
  execFileSync('mkfifo', [path])
  const f = await fixture(t, path)
  const credential = f.make()
  const started = Date.now()
  await credential.current(AbortSignal.timeout(10_000))
  assert.ok(Date.now() - started < 8000)
  refusedLine(f.logs(), path, /not a regular file \(a FIFO\)/)
  assert.equal(f.issued(), 1)
})

test('a directory at the store path is refused; the daemon keeps serving from memory', async (t) => {
  const path = join(tempDir(t), 'mi.json')
  mkdirSync(path)
  const f = await fixture(t, path)
  const credential = f.make()
  const binding = await credential.current()
  assert.ok(binding.binding.x5tS256)
  refusedLine(f.logs(), path, /not a regular file \(a directory\)/)
})

/** A tmpfs the test mounts (root only), unmounted after. */
function tmpfs(t: TestContext, options: string): string | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'hostile-store-fs-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { stdio: 'pipe' })
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    t.skip(`cannot mount a tmpfs here: ${(error as Error).message.split('\n')[0]}`)
    return undefined
  }
  t.after(() => {
    execFileSync('umount', ['-l', dir])
    rmSync(dir, { recursive: true, force: true })
  })
  return dir
}

test('a read-only filesystem: the binding is served, the failure to persist is logged', async (t) => {
  const dir = tmpfs(t, 'size=256k,mode=0700')
  if (!dir) return
  execFileSync('mount', ['-o', 'remount,ro', dir])
  const path = join(dir, 'mi.json')
  const f = await fixture(t, path)
  const credential = f.make()
  const binding = await credential.current()
  assert.ok(binding.binding.x5tS256)
  await credential.close()
  assert.equal(existsSync(path), false)
  const line = f
    .logs()
    .find((l) => l['msg'] === 'binding store update failed; serving from memory, not persisted')
  assert.ok(line, f.lines.join('\n'))
  assert.equal(line['key'], 'identities.mi.bindingStore')
  assert.match(String(line['error']), /EROFS/)
})

test('a full filesystem: the binding is served, no half-written store is left, the failure is logged', async (t) => {
  const dir = tmpfs(t, 'size=64k,mode=0700')
  if (!dir) return
  // Fill it up.
  try {
    writeFileSync(join(dir, 'filler'), Buffer.alloc(1024 * 1024))
  } catch {
    // ENOSPC: full, as wanted.
  }
  const path = join(dir, 'mi.json')
  const f = await fixture(t, path)
  const credential = f.make()
  const binding = await credential.current()
  assert.ok(binding.binding.x5tS256)
  await credential.close()
  assert.equal(existsSync(path), false, 'no partial store')
  const line = f
    .logs()
    .find((l) => l['msg'] === 'binding store update failed; serving from memory, not persisted')
  assert.ok(line, f.lines.join('\n'))
  assert.match(String(line['error']), /ENOSPC/)
})

test('a good store (0600, own uid) is still reused', async (t) => {
  const path = join(tempDir(t), 'mi.json')
  const f = await fixture(t, path)
  const before = await f.seed()
  const copy = `${path}.copy`
  copyFileSync(path, copy)
  assert.equal(lstatSync(path).isFile(), true)
  const again = f.make()
  await again.prepared()
  assert.equal(again.peek()?.binding.x5tS256, before.binding.x5tS256)
  assert.equal(f.issued(), 1)
})
