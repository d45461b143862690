import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { binPath } from '../process/process.ts'

const NOBODY = 65534

/** The daemon's bin with a config whose `upstream.caFile` is `caFile`: its exit code and stdout. */
async function startWith(dir: string, caFile: string): Promise<{ code: number; stdout: string }> {
  const config = join(dir, 'config.yaml')
  writeFileSync(
    config,
    [
      'listen:',
      '  port: 0',
      'upstream:',
      '  imdsEndpoint: http://127.0.0.1:9',
      `  caFile: ${caFile}`,
      'identities:',
      '  mi:',
      '    managedIdentity: {}',
      '',
    ].join('\n'),
  )
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [binPath, '--config', config], {
      env: { PATH: process.env['PATH'] ?? '' },
      timeout: 30_000,
    })
    return { code: 0, stdout }
  } catch (error) {
    const e = error as { code: number; stdout: string }
    return { code: e.code, stdout: e.stdout }
  }
}

test('upstream.caFile missing, a FIFO, or owned by another uid: the daemon does not start, and says which key', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-ca-file-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const fifo = join(dir, 'fifo.pem')
  execFileSync('mkfifo', [fifo])
  const planted = join(dir, 'planted.pem')
  writeFileSync(planted, '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n', { mode: 0o644 })
  const cases: [string, RegExp][] = [
    [join(dir, 'missing.pem'), /cannot read [^"]*missing\.pem \(ENOENT\)/],
    [fifo, /fifo\.pem is not a regular file \(a FIFO\)/],
  ]
  if (process.getuid?.() === 0) {
    chownSync(planted, NOBODY, NOBODY)
    cases.push([planted, /planted\.pem is owned by uid 65534/])
  }
  for (const [caFile, reason] of cases) {
    const { code, stdout } = await startWith(dir, caFile)
    assert.equal(code, 1, stdout)
    const failure = stdout.split('\n').find((line) => line.includes('"failed to start"'))
    assert.ok(failure, stdout)
    assert.match(failure, /"error":"upstream\.caFile: /)
    assert.match(failure, reason)
  }
})
