import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Context } from 'hono'
import { callerPolicy, firstAllowedIdentity } from '../../sidecar/src/http/callers/caller-allow.ts'
import { AllowListAccess } from '../../sidecar/src/http/callers/caller-access.ts'
import { PeerUids } from '../../sidecar/src/http/callers/peer-uids.ts'
import { isSidecarError } from '../../sidecar/src/core/errors.ts'
import { createLogger } from '../../sidecar/src/core/log.ts'
import { Metrics } from '../../sidecar/src/core/metrics.ts'
import { SocketTable } from '../../sidecar/src/http/callers/socket-table.ts'
import { FakeClock } from '../support/fake-clock.ts'
import { LogCapture } from '../support/runtime.ts'

const entries = [
  { uid: 1000, identities: ['app', 'mi'] },
  { uid: 33, user: 'www-data', identities: ['mi'] },
]

test('the pure decision: listed uid and identity, unlisted uid, unlisted identity, unknown uid', () => {
  const decide = callerPolicy(entries)
  assert.deepEqual(decide(1000, 'mi'), { allowed: true, uid: 1000 })
  assert.deepEqual(
    decide(1000, undefined),
    { allowed: true, uid: 1000 },
    'any identity: the uid has an entry',
  )
  const other = decide(1001, 'mi')
  assert.equal(other.allowed, false)
  assert.equal(!other.allowed && other.reason, 'caller_not_allowed')
  assert.match(!other.allowed ? other.message : '', /uid 1001 is not listed in callers\.allow/)
  const wrongIdentity = decide(33, 'app')
  assert.match(
    !wrongIdentity.allowed ? wrongIdentity.message : '',
    /uid 33 may not use identity "app"; callers\.allow lets it use "mi" \(ask with identity=mi\)/,
  )
  const unknown = decide(undefined, 'mi')
  assert.equal(!unknown.allowed && unknown.reason, 'caller_unknown')
  assert.equal(firstAllowedIdentity(entries, 1000), 'app')
  assert.equal(firstAllowedIdentity(entries, 5), undefined)
})

/** A request context as @hono/node-server builds it, for a connection `socket`. */
function contextOn(socket: object): Context {
  return { env: { incoming: { socket } } } as unknown as Context
}

test('refused connections are logged once each, at most N lines a minute, the rest counted in the next line', async () => {
  const clock = new FakeClock()
  const logs = new LogCapture()
  const metrics = new Metrics()
  // Sockets this PeerUids never saw have no known owner: each stands for a refused connection.
  const access = new AllowListAccess({
    entries,
    peers: new PeerUids(new SocketTable(), metrics),
    logger: createLogger({ level: 'info', destination: logs }),
    metrics,
    clock,
    logLinesPerMinute: 3,
  })
  const refuse = (socket: object) =>
    assert.throws(
      () => access.authorize(contextOn(socket), 'mi'),
      (error) => isSidecarError(error) && error.status === 403 && error.reason === 'caller_unknown',
    )
  const first = {}
  for (let i = 0; i < 4; i++) refuse(first)
  assert.equal(logs.lines.length, 1, 'one line for four requests on one connection')
  for (let i = 0; i < 5; i++) refuse({})
  assert.equal(logs.lines.length, 3, 'capped at 3 lines in the minute')
  await clock.advance(60_000)
  refuse({})
  assert.equal(logs.lines.length, 4)
  assert.equal(logs.records[3]!['suppressed_since_last_line'], 3)
  const counted = (await metrics.callerRefusals.get()).values
  assert.deepEqual(
    counted.map((v) => [v.labels, v.value]),
    [[{ uid: 'unknown', identity: 'mi' }, 10]],
  )
})
