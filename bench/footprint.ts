/**
 * Footprint against a bare node:http process, interleaved A B B A: time from spawn to ready (the
 * daemon's `{"msg":"ready"}`, the bare server's listening line), idle RSS, and RSS / heap growth per
 * 10 000 cached tokens (after a forced GC; both processes run with the same preload).
 *
 *   npx node bench/footprint.ts      (BENCH_ROUNDS, BENCH_TOKENS=10000)
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { daemonYaml } from './lib/daemon-yaml.ts'
import {
  compiledBuilt,
  compiledEntry,
  machine,
  rssMb,
  scratch,
  startBare,
  startDaemon,
  startEmulatorProcess,
  type Started,
} from './lib/processes.ts'
import { fixed, interleaved, knob, median } from './lib/stats.ts'

const rounds = knob('BENCH_ROUNDS', 2, 10)
const tokens = knob('BENCH_TOKENS', 10_000, 10_000)
const memoryFile = join(scratch, 'memory.jsonl')
const preload = ['--expose-gc', '--import', join(import.meta.dirname, 'lib', 'memory-report.mjs')]
const env = { BENCH_MEMORY_FILE: memoryFile }

console.log(`footprint vs a bare node:http process — ${machine()}`)
const emulator = await startEmulatorProcess()
const yaml = daemonYaml(emulator, '  mi:\n    managedIdentity: {}', `cache:\n  maxTokens: ${tokens}`)

const settle = () => new Promise((resolve) => setTimeout(resolve, 1000))

/** gc + memoryUsage inside the process, through the preload. */
async function memory(process_: Started): Promise<{ rss: number; heapUsed: number }> {
  writeFileSync(memoryFile, '')
  process_.child.kill('SIGUSR2')
  for (let i = 0; i < 500; i++) {
    const text = readFileSync(memoryFile, 'utf8').trim()
    if (text) return JSON.parse(text) as { rss: number; heapUsed: number }
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error('no memory report')
}

interface Start {
  readyMs: number
  idleRssMb: number
}

const bare = async (): Promise<Start> => {
  const s = await startBare('{}', { 'content-type': 'application/json' }, preload)
  await settle()
  const idleRssMb = rssMb(s.pid)
  await s.stop()
  return { readyMs: s.startMs, idleRssMb }
}
const daemon = async (): Promise<Start> => {
  const s = await startDaemon(yaml, { nodeArgs: preload, env })
  await settle()
  const idleRssMb = rssMb(s.pid)
  await s.stop()
  return { readyMs: s.startMs, idleRssMb }
}

const { a, b } = await interleaved(rounds, bare, daemon)
const ready = [median(a.map((r) => r.readyMs)), median(b.map((r) => r.readyMs))] as const
const rss = [median(a.map((r) => r.idleRssMb)), median(b.map((r) => r.idleRssMb))] as const
console.log(`${rounds} rounds of A B B A (A = bare node:http, B = daemon bin, no warm identity), median`)
console.log(
  `  time to ready  bare ${fixed(ready[0], 0)} ms, daemon ${fixed(ready[1], 0)} ms, ratio ${fixed(ready[1] / ready[0], 2)}`,
)
console.log(
  `  idle RSS       bare ${fixed(rss[0])} MB, daemon ${fixed(rss[1])} MB, ratio ${fixed(rss[1] / rss[0], 2)}`,
)
if (compiledBuilt()) {
  const compiled = async (): Promise<Start> => {
    const s = await startDaemon(yaml, { nodeArgs: preload, env, entry: compiledEntry })
    await settle()
    const idleRssMb = rssMb(s.pid)
    await s.stop()
    return { readyMs: s.startMs, idleRssMb }
  }
  const c = await interleaved(rounds, bare, compiled)
  const cReady = [median(c.a.map((r) => r.readyMs)), median(c.b.map((r) => r.readyMs))] as const
  const cRss = [median(c.a.map((r) => r.idleRssMb)), median(c.b.map((r) => r.idleRssMb))] as const
  console.log(`${rounds} rounds of A B B A (A = bare node:http, B = compiled daemon, sidecar/dist), median`)
  console.log(
    `  time to ready  bare ${fixed(cReady[0], 0)} ms, compiled daemon ${fixed(cReady[1], 0)} ms, ratio ${fixed(cReady[1] / cReady[0], 2)}`,
  )
  console.log(
    `  idle RSS       bare ${fixed(cRss[0])} MB, compiled daemon ${fixed(cRss[1])} MB, ratio ${fixed(cRss[1] / cRss[0], 2)}`,
  )
} else {
  console.log('  (npm run build first to measure the compiled daemon too)')
}

// Memory per cached token: fill the cache with `tokens` distinct resources.
const filled = await startDaemon(yaml, { nodeArgs: preload, env })
const before = await memory(filled)
const dispatcher = new Agent({ connections: 16 })
let next = 0
await Promise.all(
  Array.from({ length: 16 }, async () => {
    while (next < tokens) {
      const i = next++
      const res = await request(
        `${filled.url}/token?resource=${encodeURIComponent(`https://r${i}.example.com`)}`,
        {
          headers: { Metadata: 'true' },
          dispatcher,
        },
      )
      if (res.statusCode !== 200) throw new Error(`token ${i}: ${res.statusCode}`)
      await res.body.arrayBuffer()
    }
  }),
)
await dispatcher.close()
const after = await memory(filled)
await filled.stop()
const per10k = 10_000 / tokens / (1024 * 1024)
console.log(
  `  per 10 000 cached tokens (${tokens} filled, after GC): RSS +${fixed((after.rss - before.rss) * per10k)} MB, heap +${fixed((after.heapUsed - before.heapUsed) * per10k)} MB (idle heap ${fixed(before.heapUsed / 1048576)} MB)`,
)
await emulator.stop()
