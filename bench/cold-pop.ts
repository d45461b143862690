/**
 * A cold mTLS PoP `GET /token` end to end: a freshly started daemon (real bin, MTLS_POP managed
 * identity, not warm) asked for its first token, so it fetches IMDS v2 platform metadata, gets a
 * certificate for its CSR, and runs the Entra mTLS leg — against the emulator in its own process,
 * so the emulator's crypto is not counted as the daemon's. The daemon's own share is the end-to-end
 * time minus its upstream round trips (the sum of its upstream histogram); the baseline, measured in
 * the same run, is those round trips themselves.
 *
 *   npx node bench/cold-pop.ts      (BENCH_ROUNDS)
 */
import { daemonYaml } from './lib/daemon-yaml.ts'
import { cpuMs, machine, startDaemon, startEmulatorProcess } from './lib/processes.ts'
import { fixed, knob, median } from './lib/stats.ts'
import { performance } from 'node:perf_hooks'

const samples = knob('BENCH_ROUNDS', 2, 10) * 4
const resource = 'https://graph.microsoft.com'

console.log(`cold mTLS PoP GET /token, fresh daemon per sample, emulator in its own process — ${machine()}`)
const emulator = await startEmulatorProcess()

interface Sample {
  /** CPU the daemon process used while answering (10 ms ticks), all threads and event loop only. */
  daemonCpuMs: number
  loopCpuMs: number
  endToEndMs: number
  upstreamMs: number
  upstreamCalls: number
}

async function upstreamSeconds(url: string): Promise<{ seconds: number; calls: number }> {
  const text = await (await fetch(`${url}/metrics`)).text()
  let seconds = 0
  let calls = 0
  for (const line of text.split('\n')) {
    const match = /^credential_sidecar_upstream_request_duration_seconds_(sum|count)\{[^}]*\} (\S+)$/.exec(
      line,
    )
    if (match?.[1] === 'sum') seconds += Number(match[2])
    if (match?.[1] === 'count') calls += Number(match[2])
  }
  return { seconds, calls }
}

async function cold(): Promise<Sample> {
  const daemon = await startDaemon(
    daemonYaml(emulator, '  mi:\n    managedIdentity: {}\n    protocolScheme: MTLS_POP'),
  )
  // Let start-up work (a pre-generated binding key) finish: the request is what is measured.
  await new Promise((resolve) => setTimeout(resolve, 500))
  const before = await upstreamSeconds(daemon.url)
  const cpuBefore = cpuMs(daemon.pid)
  const loopBefore = cpuMs(daemon.pid, true)
  const started = performance.now()
  const res = await fetch(`${daemon.url}/token?resource=${encodeURIComponent(resource)}`, {
    headers: { Metadata: 'true' },
  })
  const body = (await res.json()) as { token_type?: string }
  const endToEndMs = performance.now() - started
  const daemonCpuMs = cpuMs(daemon.pid) - cpuBefore
  const loopCpuMs = cpuMs(daemon.pid, true) - loopBefore
  if (res.status !== 200 || body.token_type !== 'mtls_pop') throw new Error(`unexpected answer ${res.status}`)
  const after = await upstreamSeconds(daemon.url)
  await daemon.stop()
  return {
    daemonCpuMs,
    loopCpuMs,
    endToEndMs,
    upstreamMs: (after.seconds - before.seconds) * 1000,
    upstreamCalls: after.calls - before.calls,
  }
}

await cold() // warm the emulator's JIT and the OS caches once
const results: Sample[] = []
for (let i = 0; i < samples; i++) results.push(await cold())
const e2e = median(results.map((r) => r.endToEndMs))
const upstream = median(results.map((r) => r.upstreamMs))
const own = median(results.map((r) => r.endToEndMs - r.upstreamMs))
console.log(`${samples} samples (median; min–max)`)
const range = (xs: number[]) => `${fixed(Math.min(...xs))}–${fixed(Math.max(...xs))}`
console.log(`  end to end             ${fixed(e2e)} ms  (${range(results.map((r) => r.endToEndMs))})`)
console.log(
  `  upstream round trips   ${fixed(upstream)} ms  (${range(results.map((r) => r.upstreamMs))}), ${results[0]?.upstreamCalls} calls (baseline)`,
)
console.log(
  `  daemon's own share     ${fixed(own)} ms  (${range(results.map((r) => r.endToEndMs - r.upstreamMs))})`,
)
console.log(
  `  daemon CPU time        ${fixed(median(results.map((r) => r.daemonCpuMs)), 0)} ms  (${range(results.map((r) => r.daemonCpuMs))}; all threads, includes the background refill of the pre-generated key)`,
)
console.log(
  `  event-loop CPU time    ${fixed(median(results.map((r) => r.loopCpuMs)), 0)} ms  (${range(results.map((r) => r.loopCpuMs))}; main thread only; /proc utime+stime in 10 ms ticks, load-independent)`,
)
console.log(`  ratio end-to-end / upstream round trips: ${fixed(e2e / upstream, 2)}`)
await emulator.stop()
