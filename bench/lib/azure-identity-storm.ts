/**
 * The storm's baseline: an application without the sidecar, calling @azure/identity's
 * ManagedIdentityCredential in-process `count` times at once (argv[2]) against the emulated IMDS
 * named by AZURE_POD_IDENTITY_AUTHORITY_HOST. Prints `{answered, failed, maxMs, p50Ms}`.
 */
import { ManagedIdentityCredential } from '@azure/identity'
import { performance } from 'node:perf_hooks'
import { percentile } from './stats.ts'

const count = Number(process.argv[2] ?? 1000)
const scope = process.argv[3] ?? 'https://storm.example.com/.default'
const credential = new ManagedIdentityCredential()
const latencies: number[] = []
let failed = 0
const started = performance.now()
await Promise.all(
  Array.from({ length: count }, async () => {
    try {
      await credential.getToken(scope)
      latencies.push(performance.now() - started)
    } catch (error) {
      if (failed++ === 0) process.stderr.write(`first failure: ${String(error)}\n`)
    }
  }),
)
process.stdout.write(
  `${JSON.stringify({ answered: latencies.length, failed, maxMs: Math.max(...latencies), p50Ms: percentile(latencies, 50) })}\n`,
)
