import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PerTurnQueue } from '../../sidecar/src/http/callers/per-turn-queue.ts'

const turn = () => new Promise((resolve) => setImmediate(resolve))

test('work runs perTurn at a time, in order, each after the I/O of a turn', async () => {
  const lane = new PerTurnQueue({ perTurn: 8 })
  const ran: number[] = []
  for (let i = 0; i < 20; i++) lane.defer(() => ran.push(i))
  assert.deepEqual(ran, [], 'nothing runs synchronously')
  assert.equal(lane.length, 20)
  await turn()
  assert.deepEqual(ran, [0, 1, 2, 3, 4, 5, 6, 7])
  // Work that arrives meanwhile (e.g. an allowed caller's request) runs in between.
  let between = false
  setImmediate(() => (between = ran.length === 8 || ran.length === 16))
  await turn()
  await turn()
  await turn()
  assert.deepEqual(
    ran,
    Array.from({ length: 20 }, (_, i) => i),
  )
  assert.ok(between, 'other callbacks ran between two batches')
  assert.equal(lane.length, 0)
})

test('one failing piece of work does not stop the others; the lane is reusable once empty', async () => {
  const lane = new PerTurnQueue({ perTurn: 2 })
  const ran: string[] = []
  lane.defer(() => {
    throw new Error('boom')
  })
  lane.defer(() => ran.push('b'))
  lane.defer(() => ran.push('c'))
  await turn()
  await turn()
  assert.deepEqual(ran, ['b', 'c'])
  lane.defer(() => ran.push('d'))
  await turn()
  assert.deepEqual(ran, ['b', 'c', 'd'])
})
