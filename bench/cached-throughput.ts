/**
 * Cached `GET /token` throughput and latency against a bare node:http server that answers the same
 * bytes, at 1, 16 and 64 connections, interleaved A B B A. The daemon (real bin, default log level),
 * the baseline, the emulator and the load generator are separate processes; on a 2-core machine the
 * generator and the server share the cores, alike for A and B.
 *
 *   npx node bench/cached-throughput.ts      (BENCH_ROUNDS, BENCH_SECONDS, BENCH_CONNECTIONS=1,16,64)
 *
 * BENCH_SHIPPED=1 runs the daemon as the image does (compiled bundle, the ENTRYPOINT's V8 flags)
 * instead of the bin from the sources.
 */
import { daemonYaml } from './lib/daemon-yaml.ts'
import {
  load,
  machine,
  shippedDaemon,
  startBare,
  startDaemon,
  startEmulatorProcess,
} from './lib/processes.ts'
import { fixed, interleaved, knob, median } from './lib/stats.ts'

const rounds = knob('BENCH_ROUNDS', 2, 10)
const durationMs = knob('BENCH_SECONDS', 2, 30) * 1000
const connectionCounts = (process.env['BENCH_CONNECTIONS'] ?? '1,16,64').split(',').map(Number)
const resource = 'https://management.azure.com'
const path = `/token?resource=${encodeURIComponent(resource)}`

console.log(`cached GET /token vs bare node:http, same body — ${machine()}`)
const emulator = await startEmulatorProcess()
const shipped = process.env['BENCH_SHIPPED'] === '1' ? shippedDaemon() : undefined
if (shipped) console.log(`daemon: ${shipped.label}`)
const daemon = await startDaemon(
  daemonYaml(emulator, `  mi:\n    managedIdentity: {}\n    warm: true\n    warmResource: ${resource}`),
  shipped ?? {},
)
const sample = await fetch(`${daemon.url}${path}`, { headers: { Metadata: 'true' } })
if (sample.status !== 200) throw new Error(`daemon answered ${sample.status}: ${await sample.text()}`)
const headers = { 'content-type': sample.headers.get('content-type') ?? '', 'cache-control': 'no-store' }
const bare = await startBare(await sample.text(), headers)

const run = (port: number, connections: number) => () =>
  load({ mode: 'closed', port, path, headers: { Metadata: 'true' }, connections, durationMs, warmupMs: 300 })

console.log(
  `${rounds} rounds of A B B A, ${durationMs / 1000} s each; load generator in its own process (it competes for the 2 cores, alike for both)`,
)
console.log('conns | bare req/s  p50   p99  | daemon req/s  p50   p99  | ratio (daemon/bare) | non-200')
for (const connections of connectionCounts) {
  const { a, b } = await interleaved(rounds, run(bare.port, connections), run(daemon.port, connections))
  const rpsA = median(a.map((r) => r.rps))
  const rpsB = median(b.map((r) => r.rps))
  const p = (rs: typeof a, key: 'p50Ms' | 'p99Ms') => fixed(median(rs.map((r) => r[key])), 2)
  const bad = b.reduce((n, r) => n + r.non200 + r.errors, 0) + a.reduce((n, r) => n + r.non200 + r.errors, 0)
  console.log(
    `${String(connections).padStart(5)} | ${fixed(rpsA, 0).padStart(10)} ${p(a, 'p50Ms')} ${p(a, 'p99Ms')} | ${fixed(rpsB, 0).padStart(12)} ${p(b, 'p50Ms')} ${p(b, 'p99Ms')} | ${fixed(rpsB / rpsA, 2).padStart(19)} | ${bad}`,
  )
}

await Promise.all([daemon.stop(), bare.stop(), emulator.stop()])
