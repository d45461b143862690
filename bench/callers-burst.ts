/**
 * Does a refused uid's burst starve an allowed one? (issue 21: `callers.allow`, a refused uid's
 * burst of 2 000 new connections.) A daemon with `callers.allow` listing only this process's uid,
 * and a bare node:http server answering the same bytes, each in its own process. Against each in
 * turn (A B B A x BENCH_ROUNDS): a probe as this (allowed) uid asks for a cached token back to back
 * over BENCH_PROBE_CONNECTIONS keep-alive connections while a process running as uid 65534
 * (refused: no entry) opens BENCH_BURST (2 000) new connections, BENCH_BURST_CONCURRENCY at a time,
 * one GET each. Prints the probe's p50/p99 during each burst, the burst's duration and answers, and
 * the ratio of the daemon's p99 to the bare server's (medians over rounds, same run).
 *
 * Needs root (the burst runs as another uid). Not part of `npm test`.
 *
 *   npx node bench/callers-burst.ts   (BENCH_ROUNDS, BENCH_BURST, BENCH_BURST_CONCURRENCY, BENCH_PROBE_CONNECTIONS)
 */
import { execFile } from 'node:child_process'
import { performance } from 'node:perf_hooks'
import { Agent, request } from 'undici'
import { daemonYaml } from './lib/daemon-yaml.ts'
import { machine, shippedDaemon, startBare, startDaemon, startEmulatorProcess } from './lib/processes.ts'
import { fixed, knob, median, percentile } from './lib/stats.ts'

if (process.platform !== 'linux' || process.getuid?.() !== 0) {
  console.log('callers-burst: needs Linux and root (the burst runs as uid 65534); skipped')
  process.exit(0)
}
const rounds = knob('BENCH_ROUNDS', 2, 20)
const burst = knob('BENCH_BURST', 2_000, 50_000)
const concurrency = knob('BENCH_BURST_CONCURRENCY', 500, 5_000)
const probeConnections = knob('BENCH_PROBE_CONNECTIONS', 4, 64)
const refusedUid = 65534
const path = '/token?resource=https://management.azure.com'
const shipped = shippedDaemon()

console.log(
  `refused uid ${refusedUid}: ${burst} new connections, ${concurrency} at a time; allowed uid ${process.getuid()}: ` +
    `${probeConnections} keep-alive connections back to back — ${machine()}`,
)
console.log(`  daemon: ${shipped.label}`)
const emulator = await startEmulatorProcess()
const daemon = await startDaemon(
  daemonYaml(
    emulator,
    '  mi:\n    managedIdentity: {}',
    `callers:\n  allow:\n    - uid: ${process.getuid()}\n      identities: [mi]`,
  ),
  shipped,
)
// The bare server answers what the daemon answers a cached hit: same body, same headers.
const sample = await request(`${daemon.url}${path}`, { headers: { metadata: 'true' } })
const body = await sample.body.text()
if (sample.statusCode !== 200) throw new Error(`daemon answered ${sample.statusCode}: ${body}`)
const headers = Object.fromEntries(
  Object.entries(sample.headers).filter(
    ([name]) => !['date', 'content-length', 'connection', 'keep-alive'].includes(name),
  ),
) as Record<string, string>
const bare = await startBare(body, headers, shipped.nodeArgs)
const targets = { daemon: daemon.url, bare: `http://127.0.0.1:${bare.port}` }

/** Runs in the child: becomes the refused uid, then opens the burst's connections. */
const burstScript = `
process.setgroups([]); process.setgid(${refusedUid}); process.setuid(${refusedUid})
const http = require('node:http')
const { url, total, concurrency } = JSON.parse(process.env.BURST)
const statuses = {}
let started = 0
const one = () => new Promise((resolve) => {
  const req = http.get(url, { agent: false, headers: { Metadata: 'true' } }, (res) => {
    res.resume(); res.on('end', () => { statuses[res.statusCode] = (statuses[res.statusCode] || 0) + 1; resolve() })
  })
  req.on('error', (e) => { statuses[e.code] = (statuses[e.code] || 0) + 1; resolve() })
})
const t0 = performance.now()
Promise.all(Array.from({ length: concurrency }, async () => { while (started < total) { started++; await one() } }))
  .then(() => process.stdout.write(JSON.stringify({ ms: performance.now() - t0, statuses })))
`

function runBurst(url: string): Promise<{ ms: number; statuses: Record<string, number> }> {
  return new Promise((resolve, reject) =>
    execFile(
      process.execPath,
      ['-e', burstScript],
      {
        cwd: '/',
        timeout: 120_000,
        env: { BURST: JSON.stringify({ url: `${url}${path}`, total: burst, concurrency }) },
      },
      (error, stdout) => (error ? reject(error) : resolve(JSON.parse(stdout))),
    ),
  )
}

interface Round {
  p50: number
  p99: number
  quietP99: number
  max: number
  probes: number
  burstMs: number
  statuses: Record<string, number>
}

/** The probe runs from just before the burst starts until it ends; latencies of that window. */
async function round(target: keyof typeof targets): Promise<Round> {
  const dispatcher = new Agent({ connections: probeConnections, pipelining: 1 })
  const url = `${targets[target]}${path}`
  const ask = async () => {
    const res = await request(url, { dispatcher, headers: { metadata: 'true' } })
    await res.body.dump()
    if (res.statusCode !== 200) throw new Error(`probe got ${res.statusCode} from ${target}`)
  }
  // Open and warm the keep-alive connections first: the probe's uid is looked up once, here.
  for (let i = 0; i < 50; i++) await Promise.all(Array.from({ length: probeConnections }, ask))
  /** The probe's latencies until `done` settles. */
  const probe = async <T>(done: Promise<T>) => {
    const latencies: number[] = []
    let running = true
    const loops = Array.from({ length: probeConnections }, async () => {
      while (running) {
        const started = performance.now()
        await ask()
        latencies.push(performance.now() - started)
      }
    })
    const outcome = await done
    running = false
    await Promise.all(loops)
    return { latencies, outcome }
  }
  // The same probe for a second without the burst: the target's own p99, for context.
  const quiet = await probe(new Promise((resolve) => setTimeout(resolve, 1000)))
  const { latencies, outcome: result } = await probe(runBurst(targets[target]))
  await dispatcher.close()
  return {
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    quietP99: percentile(quiet.latencies, 99),
    max: Math.max(...latencies),
    probes: latencies.length,
    burstMs: result.ms,
    statuses: result.statuses,
  }
}

const results = { daemon: [] as Round[], bare: [] as Round[] }
for (let i = 0; i < rounds; i++) {
  for (const target of ['daemon', 'bare', 'bare', 'daemon'] as const) {
    const r = await round(target)
    results[target].push(r)
    console.log(
      `  ${target.padEnd(6)} probe p50 ${fixed(r.p50, 2)} ms p99 ${fixed(r.p99, 2)} ms max ${fixed(r.max, 1)} ms ` +
        `(${r.probes} requests; without the burst p99 ${fixed(r.quietP99, 2)} ms); burst ${fixed(r.burstMs, 0)} ms, answers ${JSON.stringify(r.statuses)}`,
    )
  }
}
const p99 = (side: Round[]) => median(side.map((r) => r.p99))
const p50 = (side: Round[]) => median(side.map((r) => r.p50))
const quiet = (side: Round[]) => median(side.map((r) => r.quietP99))
console.log(
  `allowed uid's keep-alive p99 under the refused burst: daemon ${fixed(p99(results.daemon), 2)} ms, ` +
    `bare ${fixed(p99(results.bare), 2)} ms, ratio ${fixed(p99(results.daemon) / p99(results.bare), 2)}× ` +
    `(p50 ${fixed(p50(results.daemon), 2)} vs ${fixed(p50(results.bare), 2)} ms; target ≤ 1.5×); ` +
    `without the burst: p99 ${fixed(quiet(results.daemon), 2)} vs ${fixed(quiet(results.bare), 2)} ms, ratio ${fixed(quiet(results.daemon) / quiet(results.bare), 2)}×`,
)
// SIGTERM, so a daemon run with BENCH_NODE_ARGS=--cpu-prof writes its profile.
await new Promise((resolve) => daemon.child.once('exit', resolve).kill('SIGTERM'))
await Promise.all([bare.stop(), emulator.stop()])
