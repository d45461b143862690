/**
 * What `callers.allow` costs: cached GET /token throughput from two daemons in one run, one
 * without and one with `callers.allow` (an entry for this process's uid), against one emulator.
 * Rounds are interleaved A B B A and repeated so drift (other load on the machine, JIT warm-up)
 * hits both sides alike. Two connection patterns:
 * - keep-alive: N connections reused; the uid is read once per connection, so this should be ~1.0.
 * - new connection per request: every request pays one socket-table lookup (the worst case).
 * Prints req/s per round, the medians and the ratio, and the lookup time the daemon measured. Loopback
 * only, bounded in time; not part of `npm test`.
 *
 *   npx node bench/callers-allow.ts [secondsPerRound=2] [repeats=3] [connections=8]
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseConfig } from '../sidecar/src/config/load.ts'
import { Daemon } from '../sidecar/src/daemon/daemon.ts'
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
const start = (allow: string) =>
  Daemon.start({ config: parseConfig(yaml(allow), { source: 'bench.yaml' }), logger: silentLogger() })
const open = await start('')
const guarded = await start(`callers:\n  allow:\n    - uid: ${uid}\n      identities: [mi]\n`)

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

for (const url of [open.url, guarded.url]) await get(url, false) // fill each daemon's cache
console.log(
  `cached GET /token, ${connections} connections, ${secondsPerRound} s rounds, A B B A x ${repeats}; ` +
    `/proc/net/tcp has ${readFileSync('/proc/net/tcp', 'latin1').split('\n').length - 2} entries at start`,
)
for (const keepAlive of [true, false]) {
  const results = { without: [] as number[], with: [] as number[] }
  for (let i = 0; i < repeats; i++) {
    for (const side of ['without', 'with', 'with', 'without'] as const) {
      results[side].push(await round(side === 'with' ? guarded.url : open.url, keepAlive))
    }
  }
  const a = median(results.without)
  const b = median(results.with)
  const label = keepAlive ? 'keep-alive          ' : 'new conn per request'
  console.log(
    `${label}  without: ${a.toFixed(0)} req/s  with callers.allow: ${b.toFixed(0)} req/s  ratio ${(b / a).toFixed(3)}` +
      `  (rounds without ${results.without.map((v) => v.toFixed(0)).join(' ')}; with ${results.with.map((v) => v.toFixed(0)).join(' ')})`,
  )
}
const lookups = await guarded.runtime.metrics.callerLookups.get()
const sum = lookups.values.find((v) => v.metricName?.endsWith('_sum'))?.value ?? 0
const count = lookups.values.filter((v) => v.metricName?.endsWith('_count')).reduce((n, v) => n + v.value, 0)
console.log(
  `socket-table lookups: ${count}, mean ${((sum / Math.max(1, count)) * 1e6).toFixed(1)} µs; ` +
    `/proc/net/tcp has ${readFileSync('/proc/net/tcp', 'latin1').split('\n').length - 2} entries at the end (TIME_WAIT from the churn)`,
)
await Promise.all([open.shutdown(1000), guarded.shutdown(1000)])
await emulator.close()
