/**
 * What `callers.allow` costs: cached GET /token throughput from three daemons in one run against
 * one emulator: one without `callers.allow`, and two with it (an entry for this process's uid),
 * one per owner lookup (socket-table.ts): `proc` (/proc/net/tcp scanned on a worker thread) and
 * `sock-diag` (one netlink lookup through koffi, the default where it loads). Rounds are
 * interleaved A B C C B A and repeated so drift (other load on the machine, JIT warm-up) hits every
 * side alike. Two connection patterns:
 * - keep-alive: N connections reused; the uid is read once per connection, so this should be ~1.0.
 * - new connection per request: every request pays one lookup (the worst case). Each request
 *   leaves a TIME_WAIT entry (60 s) that the proc scan walks; sock_diag does not.
 * Prints req/s per round, the medians and the ratios to the same run's daemon without
 * callers.allow, and the lookup time each daemon measured. Loopback only, bounded in time; not
 * part of `npm test`.
 *
 *   npx node bench/callers-allow.ts [secondsPerRound=2] [repeats=3] [connections=8]
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseConfig } from '../sidecar/src/config/load.ts'
import { Daemon } from '../sidecar/src/daemon/daemon.ts'
import { SocketTable, type SocketTableBackend } from '../sidecar/src/http/callers/socket-table.ts'
import { startEmulator } from '../sidecar/src/emulator/emulator.ts'
import { silentLogger } from '../sidecar/src/core/log.ts'

const secondsPerRound = Number(process.argv[2] ?? 2)
const repeats = Number(process.argv[3] ?? 3)
const connections = Number(process.argv[4] ?? 8)
const uid = process.getuid?.() ?? 0
const path = '/token?resource=https://management.azure.com'

const emulator = await startEmulator()
const caFile = join(mkdtempSync(join(tmpdir(), 'bench-ca-')), 'ca.pem')
writeFileSync(caFile, emulator.caPem)
const yaml = (allow: string) =>
  `listen:\n  port: 0\n${allow}upstream:\n  imdsEndpoint: ${emulator.imdsUrl}\n  caFile: ${caFile}\nidentities:\n  mi:\n    managedIdentity: {}\n`
const start = (allow: string, backend?: SocketTableBackend) =>
  Daemon.start({
    config: parseConfig(yaml(allow), { source: 'bench.yaml' }),
    logger: silentLogger(),
    ...(backend === undefined ? {} : { socketTable: new SocketTable({ backend, ownUid: uid }) }),
  })
const allow = `callers:\n  allow:\n    - uid: ${uid}\n      identities: [mi]\n`
const daemons = {
  without: await start(''),
  proc: await start(allow, 'proc'),
  'sock-diag': await start(allow, 'sock-diag'),
}
type Side = keyof typeof daemons
const sides = Object.keys(daemons) as Side[]
const timeWaits = () => readFileSync('/proc/net/tcp', 'latin1').split('\n').length - 2

function get(url: string, agent: Agent | false): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { agent, headers: { Metadata: 'true' } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end()
  })
}

/** `connections` loops, each sending its next request when the previous answer is read. */
async function round(url: string, keepAlive: boolean): Promise<number> {
  const agent = keepAlive ? new Agent({ keepAlive: true, maxSockets: connections }) : false
  const deadline = performance.now() + secondsPerRound * 1000
  let served = 0
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < deadline) {
        const status = await get(url, agent)
        if (status !== 200) throw new Error(`status ${status} from ${url}`)
        served++
      }
    }),
  )
  if (agent) agent.destroy()
  return served / secondsPerRound
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0

for (const daemon of Object.values(daemons)) await get(daemon.url, false) // fill each daemon's cache
const probe = new SocketTable()
console.log(
  `cached GET /token, ${connections} connections, ${secondsPerRound} s rounds, A B C C B A x ${repeats}; ` +
    `/proc/net/tcp has ${timeWaits()} entries at start; sock_diag here: ${probe.backend === 'sock-diag' ? 'usable' : `not usable (${probe.sockDiagProblem})`}`,
)
await probe.close()
for (const keepAlive of [true, false]) {
  const results = Object.fromEntries(sides.map((side) => [side, [] as number[]])) as Record<Side, number[]>
  for (let i = 0; i < repeats; i++) {
    for (const side of [...sides, ...[...sides].reverse()]) {
      results[side].push(await round(daemons[side].url, keepAlive))
    }
  }
  const base = median(results.without)
  const label = keepAlive ? 'keep-alive          ' : 'new conn per request'
  console.log(
    `${label}  without callers.allow: ${base.toFixed(0)} req/s` +
      sides
        .filter((side) => side !== 'without')
        .map(
          (side) =>
            `; ${side}: ${median(results[side]).toFixed(0)} req/s ratio ${(median(results[side]) / base).toFixed(3)}`,
        )
        .join('') +
      `  (rounds ${sides.map((side) => `${side} ${results[side].map((v) => v.toFixed(0)).join(' ')}`).join('; ')})`,
  )
}
for (const side of ['proc', 'sock-diag'] as const) {
  const lookups = await daemons[side].runtime.metrics.callerLookups.get()
  const sum = lookups.values.find((v) => v.metricName?.endsWith('_sum'))?.value ?? 0
  const count = lookups.values
    .filter((v) => v.metricName?.endsWith('_count'))
    .reduce((n, v) => n + v.value, 0)
  console.log(`${side} lookups: ${count}, mean ${((sum / Math.max(1, count)) * 1e6).toFixed(1)} µs`)
}
console.log(`/proc/net/tcp has ${timeWaits()} entries at the end (TIME_WAIT from the churn)`)
await Promise.all(Object.values(daemons).map((daemon) => daemon.shutdown(1000)))
await emulator.close()
