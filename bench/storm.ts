/**
 * A start-up storm: 1000 concurrent cold `GET /token` requests (1000 connections opened at once)
 * to a freshly started daemon, against the same 1000 calls made in-process through @azure/identity's
 * ManagedIdentityCredential (the alternative without a sidecar), both against the emulator in its
 * own process. Reports upstream IMDS calls and the slowest answer, interleaved A B B A.
 *
 *   npx node bench/storm.ts      (BENCH_ROUNDS, BENCH_STORM=1000)
 */
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { daemonYaml } from './lib/daemon-yaml.ts'
import { load, machine, shippedDaemon, startDaemon, startEmulatorProcess } from './lib/processes.ts'
import { fixed, interleaved, knob, median } from './lib/stats.ts'

const rounds = knob('BENCH_ROUNDS', 2, 10)
const count = knob('BENCH_STORM', 1000, 5000)
let run = 0

console.log(`storm: ${count} concurrent cold token requests — ${machine()}`)
const emulator = await startEmulatorProcess()

interface Outcome {
  upstreamCalls: number
  maxMs: number
  p50Ms: number
  failed: number
  over1s: number
}

async function viaDaemon(): Promise<Outcome> {
  const resource = `https://storm${run++}.example.com`
  const daemon = await startDaemon(
    daemonYaml(emulator, '  mi:\n    managedIdentity: {}'),
    process.env['BENCH_SHIPPED'] === '1' ? shippedDaemon() : {},
  )
  await emulator.resetCalls()
  const result = await load({
    mode: 'storm',
    port: daemon.port,
    path: `/token?resource=${encodeURIComponent(resource)}`,
    headers: { Metadata: 'true' },
    connections: count,
  })
  const calls = await emulator.calls()
  await daemon.stop()
  return {
    upstreamCalls: calls['imds.token'] ?? 0,
    maxMs: result.maxMs,
    p50Ms: result.p50Ms,
    failed: count - result.answered + result.non200,
    over1s: result.over1s,
  }
}

async function viaAzureIdentity(): Promise<Outcome> {
  const scope = `https://storm${run++}.example.com/.default`
  await emulator.resetCalls()
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [join(import.meta.dirname, 'lib', 'azure-identity-storm.ts'), String(count), scope],
    { env: { ...process.env, AZURE_POD_IDENTITY_AUTHORITY_HOST: emulator.imdsUrl }, maxBuffer: 1 << 20 },
  )
  const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as {
    answered: number
    failed: number
    maxMs: number
    p50Ms: number
  }
  const calls = await emulator.calls()
  return {
    upstreamCalls: calls['imds.token'] ?? 0,
    maxMs: result.maxMs,
    p50Ms: result.p50Ms,
    failed: result.failed,
    over1s: Number.NaN,
  }
}

const { a, b } = await interleaved(rounds, viaAzureIdentity, viaDaemon)
const line = (name: string, rs: Outcome[]) =>
  console.log(
    `${name.padEnd(34)} upstream calls ${rs.map((r) => r.upstreamCalls).join('/')}, slowest ${rs.map((r) => fixed(r.maxMs, 0)).join('/')} ms (median ${fixed(median(rs.map((r) => r.maxMs)), 0)}), p50 ${fixed(median(rs.map((r) => r.p50Ms)), 0)} ms, failed ${rs.map((r) => r.failed).join('/')}${rs.some((r) => r.over1s >= 0) ? `, answers > 1 s ${rs.map((r) => r.over1s).join('/')}` : ''}`,
  )
line('A @azure/identity in-process', a)
line('B daemon (fresh process per storm)', b)
console.log(
  `ratio B/A: upstream calls ${fixed(median(b.map((r) => r.upstreamCalls)) / median(a.map((r) => r.upstreamCalls)), 3)}, slowest answer ${fixed(median(b.map((r) => r.maxMs)) / median(a.map((r) => r.maxMs)), 2)}`,
)
await emulator.stop()
