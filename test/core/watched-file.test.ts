import { execFileSync } from 'node:child_process'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WatchedFile } from '../../sidecar/src/core/watched-file.ts'
import { FakeClock } from '../support/fake-clock.ts'

function setup(t: { after(fn: () => void): void }, checkIntervalMs = 1000) {
  const dir = mkdtempSync(join(tmpdir(), 'watched-file-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'value')
  const clock = new FakeClock()
  let reads = 0
  const file = new WatchedFile({
    path,
    clock,
    checkIntervalMs,
    parse: (bytes) => {
      reads++
      const text = bytes.toString('utf8')
      if (!text) throw new Error('empty')
      return text
    },
    isStale: (value) => value === 'stale',
  })
  const replace = (text: string) => {
    writeFileSync(`${path}.new`, text)
    renameSync(`${path}.new`, path)
  }
  return { file, clock, path, replace, reads: () => reads }
}

test('a file is read once, then only re-read when its stat changes', async (t) => {
  const { file, replace, reads } = setup(t)
  replace('one')
  assert.deepEqual(await file.check(), { value: 'one', previous: undefined })
  assert.deepEqual(await file.check(), { value: 'one', previous: 'one' })
  assert.equal(reads(), 1)
  replace('two')
  assert.deepEqual(await file.check(), { value: 'two', previous: 'one' })
  assert.equal(reads(), 2)
  assert.deepEqual(await file.check(), { value: 'two', previous: 'two' })
  assert.equal(reads(), 2)
})

test('recent trusts a check younger than the interval; due says when to look again', async (t) => {
  const { file, clock, replace } = setup(t)
  replace('one')
  assert.equal(file.recent, undefined)
  assert.equal(file.due, true)
  await file.check()
  assert.equal(file.recent, 'one')
  assert.equal(file.due, false)
  await clock.advance(1000)
  assert.equal(file.recent, undefined)
  assert.equal(file.due, true)
})

test('a stale value is read again even when the file looks unchanged', async (t) => {
  const { file, replace, reads } = setup(t)
  replace('stale')
  await file.check()
  assert.equal(file.recent, undefined)
  await file.check()
  assert.equal(reads(), 2)
})

test('a failed check forgets the value and throws; forget makes the next check read', async (t) => {
  const { file, path, replace, reads } = setup(t)
  replace('one')
  await file.check()
  rmSync(path)
  await assert.rejects(file.check(), { code: 'ENOENT' })
  assert.equal(file.value, undefined)
  assert.equal(file.due, false) // a failure counts as a check
  replace('')
  await assert.rejects(file.check(), /empty/)
  replace('two')
  await file.check()
  file.forget()
  assert.equal(file.value, undefined)
  assert.deepEqual(await file.check(), { value: 'two', previous: undefined })
  assert.equal(reads(), 4)
})

test('a FIFO at the path is refused at once, never read (a read would block)', async (t) => {
  if (process.platform !== 'linux') return t.skip('mkfifo')
  const { file, path, replace } = setup(t)
  replace('one')
  await file.check()
  rmSync(path)
  execFileSync('mkfifo', [path])
  await assert.rejects(file.check(), /is not a regular file \(a FIFO\)/)
  assert.equal(file.value, undefined)
})
