/**
 * Many scopes under a small cache bound: BENCH_SCOPES (default 20 000) distinct resources asked for
 * once each from a daemon with `cache.maxTokens: BENCH_BOUND` (default 1 000), as the image runs it.
 * Then: token-expiry series and bytes of /metrics (against the idle daemon's scrape), scrape time,
 * and how long a cached `/token` waits behind a scrape: a keep-alive probe asks for a cached token
 * back to back while scrapes run; its worst latency overlapping a scrape is compared with its
 * worst latency in the same run without one.
 *
 *   npx node bench/scopes.ts      (BENCH_SCOPES, BENCH_BOUND, BENCH_NODE_ARGS to override the image's flags)
 */
import { performance } from 'node:perf_hooks'
import { Agent, request } from 'undici'
import { daemonYaml } from './lib/daemon-yaml.ts'
import { machine, rssMb, shippedDaemon, startDaemon, startEmulatorProcess } from './lib/processes.ts'
import { fixed, knob, median, percentile } from './lib/stats.ts'

const scopes = knob('BENCH_SCOPES', 20_000, 100_000)
const bound = knob('BENCH_BOUND', 1_000, 100_000)
const shipped = shippedDaemon()
console.log(`${scopes} scopes with a ${bound}-token cache bound — ${machine()}`)
console.log(`  daemon: ${shipped.label}`)
const emulator = await startEmulatorProcess()
const daemon = await startDaemon(
  daemonYaml(emulator, '  mi:\n    managedIdentity: {}', `cache:\n  maxTokens: ${bound}`),
  shipped,
)
const scrape = async () => {
  const started = performance.now()
  const res = await request(`${daemon.url}/metrics`)
  const text = await res.body.text()
  return { ms: performance.now() - started, text, started, ended: performance.now() }
}
const series = (text: string) =>
  text.split('\n').filter((l) => l.startsWith('credential_sidecar_token_expiry_timestamp_seconds{')).length

const idle = await scrape()
const dispatcher = new Agent({ connections: 16 })
let next = 0
const fillStarted = performance.now()
await Promise.all(
  Array.from({ length: 16 }, async () => {
    while (next < scopes) {
      const i = next++
      const res = await request(
        `${daemon.url}/token?resource=${encodeURIComponent(`https://r${i}.example.com`)}`,
        {
          headers: { Metadata: 'true' },
          dispatcher,
        },
      )
      if (res.statusCode !== 200) throw new Error(`scope ${i}: ${res.statusCode}`)
      await res.body.dump()
    }
  }),
)
await dispatcher.close()
console.log(
  `  filled in ${fixed((performance.now() - fillStarted) / 1000)} s; RSS ${fixed(rssMb(daemon.pid))} MB`,
)

const full = await scrape()
console.log(
  `  token-expiry series ${series(full.text)} (bound ${bound}); /metrics ${fixed(full.text.length / 1024)} KB vs ${fixed(idle.text.length / 1024)} KB idle (ratio ${fixed(full.text.length / idle.text.length, 2)})`,
)

// A cached hit, asked for back to back on one keep-alive connection, while scrapes run.
const hitPath = `/token?resource=${encodeURIComponent(`https://r${scopes - 1}.example.com`)}`
const probeAgent = new Agent({ connections: 1 })
const hits: { started: number; ms: number }[] = []
let probing = true
const probe = (async () => {
  while (probing) {
    const started = performance.now()
    const res = await request(`${daemon.url}${hitPath}`, {
      headers: { Metadata: 'true' },
      dispatcher: probeAgent,
    })
    await res.body.dump()
    if (res.statusCode !== 200) throw new Error(`hit: ${res.statusCode}`)
    hits.push({ started, ms: performance.now() - started })
  }
})()
const windows: { started: number; ended: number; ms: number }[] = []
await new Promise((resolve) => setTimeout(resolve, 500))
for (let i = 0; i < 10; i++) {
  windows.push(await scrape())
  await new Promise((resolve) => setTimeout(resolve, 200))
}
probing = false
await probe
await probeAgent.close()
const during = hits.filter((h) => windows.some((w) => h.started < w.ended && h.started + h.ms > w.started))
const outside = hits.filter((h) => !during.includes(h))
const worst = (hs: typeof hits) => Math.max(...hs.map((h) => h.ms))
console.log(
  `  scrape ${fixed(median(windows.map((w) => w.ms)), 1)} ms median, ${fixed(Math.max(...windows.map((w) => w.ms)), 1)} ms worst (10 scrapes)`,
)
console.log(
  `  cached /token: worst ${fixed(worst(during), 2)} ms overlapping a scrape (${during.length} hits), worst ${fixed(worst(outside), 2)} ms p99 ${fixed(
    percentile(
      outside.map((h) => h.ms),
      99,
    ),
    2,
  )} ms without (${outside.length} hits); delay added by a scrape ${fixed(
    worst(during) -
      percentile(
        outside.map((h) => h.ms),
        99,
      ),
    2,
  )} ms`,
)
await Promise.all([daemon.stop(), emulator.stop()])
