import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { chmodSync, chownSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { secretMatches } from '../../sidecar/src/http/callers/caller-guard.ts'
import { SecretFile } from '../../sidecar/src/http/secret-file.ts'
import { FakeClock } from '../support/fake-clock.ts'
import { capturingLogger } from '../support/runtime.ts'
import { waitUntil } from '../support/wait-until.ts'

const asRoot = process.getuid?.() === 0 ? undefined : 'chown to another uid needs root (CI runs as root)'

function setup(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-secret-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'identity-header')
  const clock = new FakeClock()
  const { logger, logs } = capturingLogger()
  /** Replaces the file as a rotation tool would: a new file renamed over the old one. */
  const write = (text: string, mode = 0o600) => {
    writeFileSync(`${path}.new`, text, { mode })
    chmodSync(`${path}.new`, mode)
    renameSync(`${path}.new`, path)
  }
  const open = () => new SecretFile({ path, clock, logger })
  const problems = () =>
    logs.records.filter((r) => r['key'] === 'callers.secretFile' && r['level'] === 'error')
  return { dir, path, clock, logs, write, open, problems }
}

test('two lines are two accepted secrets (a rotation); removing the old line retires it', async (t) => {
  const { write, open, logs } = setup(t)
  write('old-secret\r\nnew-secret\n\n')
  const file = open()
  assert.ok(secretMatches('old-secret', file.current()))
  assert.ok(secretMatches('new-secret', file.current()))
  for (const wrong of [undefined, '', 'old-secret\nnew-secret', 'new-secre', 'new-secretX', ' '])
    assert.equal(secretMatches(wrong, file.current()), false, JSON.stringify(wrong))
  write('new-secret\n')
  await file.refresh()
  assert.equal(secretMatches('old-secret', file.current()), false)
  assert.ok(secretMatches('new-secret', file.current()))
  assert.ok(logs.records.some((r) => r['msg'] === 'caller secret file re-read' && r['secrets'] === 1))
  assert.doesNotMatch(logs.text, /old-secret|new-secret/, 'never a secret in the log')
})

test('deleted or emptied: no secret is accepted any more, logged once; fixed: accepted again', async (t) => {
  const { path, write, open, problems, logs } = setup(t)
  write('s3cret\n')
  const file = open()
  rmSync(path)
  await file.refresh()
  await file.refresh()
  assert.equal(file.current(), '')
  assert.equal(secretMatches('s3cret', file.current()), false)
  assert.equal(secretMatches('', file.current()), false, 'an empty header matches nothing either')
  assert.equal(problems().length, 1, 'one line for the deletion, not one per check')
  assert.match(String(problems()[0]!['msg']), /callers\.secretFile cannot read .*identity-header \(ENOENT/)
  assert.equal(problems()[0]!['file'], path)

  write('s3cret\n')
  await file.refresh()
  assert.ok(secretMatches('s3cret', file.current()))
  assert.ok(logs.records.some((r) => r['msg'] === 'caller secret file usable again'))

  write('\n \n')
  await file.refresh()
  assert.equal(secretMatches('s3cret', file.current()), false)
  assert.match(String(problems()[1]!['msg']), /holds no secret \(emptied\)/)
  assert.doesNotMatch(logs.text, /s3cret/)
})

test('a check starts only when due, off the request path, and the next requests see it', async (t) => {
  const { path, clock, write, open } = setup(t)
  write('s3cret\n')
  const file = open()
  rmSync(path)
  assert.ok(secretMatches('s3cret', file.current()), 'younger than a second: no I/O at all')
  await clock.advance(1000)
  file.current()
  await waitUntil(() => file.current() === '', 'the deletion is seen')
})

test('a FIFO at the path is refused at once, at start and later (never a blocking read)', async (t) => {
  const { dir, path, write, open, problems } = setup(t)
  execFileSync('mkfifo', [path])
  const started = performance.now()
  assert.throws(open, /^Error: callers\.secretFile: .*identity-header is not a regular file \(a FIFO\)/)
  rmSync(path)
  write('s3cret\n')
  const file = open()
  rmSync(path)
  execFileSync('mkfifo', [path])
  await file.refresh()
  assert.equal(file.current(), '')
  assert.match(String(problems()[0]!['msg']), /not a regular file \(a FIFO\)/)
  // A symlink to a FIFO is a FIFO too; a symlink to a regular file is fine (Kubernetes mounts).
  const link = join(dir, 'link')
  symlinkSync(path, link)
  assert.throws(
    () => new SecretFile({ path: link, clock: new FakeClock(), logger: capturingLogger().logger }),
    /a FIFO/,
  )
  rmSync(path)
  write('s3cret\n')
  const viaLink = new SecretFile({ path: link, clock: new FakeClock(), logger: capturingLogger().logger })
  assert.ok(secretMatches('s3cret', viaLink.current()))
  assert.ok(performance.now() - started < 5000, 'nothing waited for a writer')
})

test('writable by group or others: refused at start and later, naming the file and the key', async (t) => {
  const { path, write, open, problems } = setup(t)
  write('s3cret\n', 0o620)
  assert.throws(open, /^Error: callers\.secretFile: .*identity-header is writable by its group \(mode 0620\)/)
  write('s3cret\n', 0o602)
  assert.throws(open, /is writable by others \(mode 0602\)/)
  write('s3cret\n', 0o600)
  const file = open()
  chmodSync(path, 0o666)
  await file.refresh()
  assert.equal(file.current(), '')
  assert.match(
    String(problems()[0]!['msg']),
    /^callers\.secretFile .*identity-header is writable by its group \(mode 0666\)/,
  )
  assert.equal(problems()[0]!['file'], path)
  chmodSync(path, 0o640)
  await file.refresh()
  assert.ok(secretMatches('s3cret', file.current()))
})

test("owned by another uid (not the daemon's, not root): refused", { skip: asRoot }, async (t) => {
  const { path, write, open, problems } = setup(t)
  write('s3cret\n')
  chownSync(path, 65534, 65534)
  assert.throws(
    open,
    /^Error: callers\.secretFile: .*identity-header is owned by uid 65534, neither the sidecar's uid \(0\) nor root/,
  )
  chownSync(path, 0, 0)
  const file = open()
  chownSync(path, 65534, 65534)
  await file.refresh()
  assert.equal(file.current(), '')
  assert.match(String(problems()[0]!['msg']), /owned by uid 65534/)
})

test('missing at start: an error naming callers.secretFile; readable by others: a warning', async (t) => {
  const { path, write, open, logs } = setup(t)
  assert.throws(open, {
    message: `callers.secretFile: cannot read ${path} (ENOENT: deleted or never created)`,
  })
  write('')
  assert.throws(open, { message: `callers.secretFile: ${path} holds no secret` })
  write('s3cret\n', 0o644)
  open()
  const warning = logs.records.find((r) => r['level'] === 'warn' && r['key'] === 'callers.secretFile')
  assert.ok(warning, 'a warning')
  assert.match(String(warning['msg']), /readable by every local user \(mode 0644\)/)
  assert.equal(warning['file'], path)
})
