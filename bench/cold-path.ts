/**
 * Cold-path latency of an IMDS v2 binding certificate: `current()` on a fresh credential, against
 * the emulator's IMDS v2 routes on loopback (real CSR verification, real certificate issuance).
 * Compares a key pre-generated at start (`prepared()` awaited before the clock starts) with
 * keygen on the request path. Prints figures; not a test.
 *
 *   npx node bench/cold-path.ts [runs]
 */
import type { AddressInfo } from 'node:net'
import { performance } from 'node:perf_hooks'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { Agent } from 'undici'
import { SystemClock } from '../sidecar/src/clock.ts'
import { ImdsV2BindingCredential } from '../sidecar/src/credentials/imds-v2-binding.ts'
import { imdsV2Routes } from '../sidecar/src/emulator/imds-v2.ts'
import { createEmulatorState } from '../sidecar/src/emulator/state.ts'
import { silentLogger } from '../sidecar/src/log.ts'
import { Metrics } from '../sidecar/src/metrics.ts'
import { SoftwareKeyProvider } from '../sidecar/src/pki/key-provider.ts'
import type { Runtime } from '../sidecar/src/runtime.ts'
import { ImdsV2Client } from '../sidecar/src/sources/imds-v2.ts'

const runs = Number(process.argv[2] ?? 21)
const clock = new SystemClock()
const state = await createEmulatorState(clock, { entraMtlsBaseUrl: 'https://127.0.0.1:4443' })
const app = new Hono()
app.use(async (c, next) => {
  await next()
  c.res.headers.set('Server', 'IMDS/150.870.65.1854')
})
app.route('/', imdsV2Routes(state))
const { server, port } = await new Promise<{ server: ReturnType<typeof serve>; port: number }>((resolve) => {
  const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) =>
    resolve({ server: s, port: info.port }),
  )
})

const dispatcher = new Agent()
const runtime: Runtime = {
  clock,
  random: Math.random,
  logger: silentLogger(),
  metrics: new Metrics(),
  dispatcher,
  extraCaPem: [],
  timeoutMs: 10_000,
}
const client = new ImdsV2Client({ runtime, imdsEndpoint: `http://127.0.0.1:${port}` })
const keyProvider = new SoftwareKeyProvider()

async function coldMs(pregenerated: boolean): Promise<number> {
  const credential = new ImdsV2BindingCredential({
    client,
    keyProvider,
    selector: { kind: 'system' },
    runtime,
    identity: 'bench',
  })
  if (pregenerated) await credential.prepared()
  const started = performance.now()
  await credential.current()
  const elapsed = performance.now() - started
  await credential.close()
  // The pool refills in the background after a take; let that keygen finish so it does not
  // compete with the next measurement.
  await new Promise((resolve) => setTimeout(resolve, 250))
  return elapsed
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2
}

// Warm up the HTTP connection, JIT and the emulator once before measuring.
await coldMs(true)
await coldMs(false)

const withKey: number[] = []
const withoutKey: number[] = []
// Interleaved, so drift (thermal, other load) hits both series alike.
for (let i = 0; i < runs; i++) {
  withKey.push(await coldMs(true))
  withoutKey.push(await coldMs(false))
}

const a = median(withKey)
const b = median(withoutKey)
console.log(`IMDS v2 cold path, current() on a fresh credential, median of ${runs} runs (loopback emulator):`)
console.log(
  `  pre-generated key : ${a.toFixed(1)} ms  (min ${Math.min(...withKey).toFixed(1)}, max ${Math.max(...withKey).toFixed(1)})`,
)
console.log(
  `  keygen on request : ${b.toFixed(1)} ms  (min ${Math.min(...withoutKey).toFixed(1)}, max ${Math.max(...withoutKey).toFixed(1)})`,
)
console.log(`  ratio             : ${(b / a).toFixed(2)}x slower without pre-generation`)

await dispatcher.close()
server.close()
