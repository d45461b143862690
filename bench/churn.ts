/**
 * RSS under connection churn: BENCH_CHURN (default 200 000) cached `GET /token` requests, each on a
 * new loopback connection the client closes once answered, 64 at a time, against the daemon as the
 * image runs it and against a bare node:http server answering the same bytes. RSS is sampled every
 * 100 ms; printed: before, peak and after, and the peak against the bare server's and against the
 * memory limit `inject` writes.
 *
 *   npx node bench/churn.ts      (BENCH_CHURN, BENCH_CONNECTIONS=64, BENCH_NODE_ARGS to override the image's flags)
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { daemonYaml } from './lib/daemon-yaml.ts'
import {
  load,
  machine,
  repoRoot,
  rssMb,
  sampleRss,
  shippedDaemon,
  startBare,
  startDaemon,
  startEmulatorProcess,
  type Started,
} from './lib/processes.ts'
import { fixed, knob } from './lib/stats.ts'

const total = knob('BENCH_CHURN', 200_000, 1_000_000)
const connections = knob('BENCH_CONNECTIONS', 64, 512)
const resource = 'https://management.azure.com'
const path = `/token?resource=${encodeURIComponent(resource)}`

/** The memory limit `inject` gives the sidecar container, in MiB. */
export function injectMemoryLimitMi(): number {
  const source = readFileSync(
    join(repoRoot, 'sidecar', 'src', 'cli', 'inject', 'sidecar-container.ts'),
    'utf8',
  )
  const limit = /limits:\s*\{[^}]*memory:\s*'(\d+)Mi'/.exec(source)?.[1]
  return Number(limit ?? Number.NaN)
}

const shipped = shippedDaemon()
console.log(`RSS under connection churn — ${machine()}`)
const emulator = await startEmulatorProcess()
const daemon = await startDaemon(
  daemonYaml(emulator, `  mi:\n    managedIdentity: {}\n    warm: true\n    warmResource: ${resource}`),
  shipped,
)
const sample = await fetch(`${daemon.url}${path}`, { headers: { Metadata: 'true' } })
if (sample.status !== 200) throw new Error(`daemon answered ${sample.status}`)
const headers = { 'content-type': sample.headers.get('content-type') ?? '', 'cache-control': 'no-store' }
const bare = await startBare(await sample.text(), headers)

async function churn(process_: Started & { port: number }) {
  await new Promise((resolve) => setTimeout(resolve, 500))
  const beforeMb = rssMb(process_.pid)
  const sampler = sampleRss(process_.pid)
  const result = await load({
    mode: 'churn',
    port: process_.port,
    path,
    headers: { Metadata: 'true' },
    connections,
    total,
  })
  const { peakMb } = sampler.stop()
  await new Promise((resolve) => setTimeout(resolve, 2000))
  return { ...result, beforeMb, peakMb, afterMb: rssMb(process_.pid) }
}

const limitMi = injectMemoryLimitMi()
console.log(
  `${total} new connections (one request each), ${connections} at a time; A = bare node:http, B = ${shipped.label}`,
)
const a = await churn(bare)
const b = await churn(daemon)
for (const [name, r] of [
  ['A bare  ', a],
  ['B daemon', b],
] as const) {
  console.log(
    `  ${name} ${fixed(r.rate, 0)} conn/s, non-200 ${r.non200}, errors ${r.errors}; RSS before ${fixed(r.beforeMb)} MB, peak ${fixed(r.peakMb)} MB, 2 s after ${fixed(r.afterMb)} MB`,
  )
}
console.log(
  `  ratio B/A: peak RSS ${fixed(b.peakMb / a.peakMb, 2)}, rate ${fixed(b.rate / a.rate, 2)}; daemon peak ${fixed(((b.peakMb * 1024 * 1024) / (limitMi * 1048576)) * 100, 0)} % of the ${limitMi} Mi limit inject writes`,
)
await Promise.all([daemon.stop(), bare.stop(), emulator.stop()])
