/**
 * Footprint against a bare node:http process, interleaved A B B A: time from spawn to ready (the
 * daemon's `{"msg":"ready"}`, the bare server's listening line) in wall time and in CPU time (every
 * thread, from /proc/PID/task/*\/schedstat: unlike wall time it barely moves when other processes
 * load the machine), idle RSS one second after ready, then the daemon's first token (a miss through
 * the emulator's IMDS: the CPU it took, and RSS one second later against the bare server's idle RSS,
 * since what start-up leaves for later is paid there), modules loaded at start, and RSS / heap growth
 * per 10 000 cached tokens after a forced GC (both processes run with the same preload).
 *
 * Daemon variants, each against the same-run baseline:
 * - shipped: the compiled bundle with the image's Node options (Dockerfile ENTRYPOINT) and a compile
 *   cache filled as the image build fills it (sidecar/scripts/warm-compile-cache.mjs)
 * - bundle: the compiled bundle with Node's defaults
 * - modules: tsc's dist/main.js (~680 modules), the daemon before the bundle
 *
 *   npx node bench/footprint.ts      (BENCH_ROUNDS=3, BENCH_TOKENS=10000; npm run build first)
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { daemonYaml } from './lib/daemon-yaml.ts'
import {
  compiledBuilt,
  compiledEntry,
  machine,
  repoRoot,
  rssMb,
  scratch,
  shippedNodeArgs,
  startBare,
  startDaemon,
  startEmulatorProcess,
  type Started,
} from './lib/processes.ts'
import { fixed, interleaved, knob, median } from './lib/stats.ts'

const rounds = knob('BENCH_ROUNDS', 3, 10)
const tokens = knob('BENCH_TOKENS', 10_000, 10_000)
const memoryFile = join(scratch, 'memory.jsonl')
const preload = ['--expose-gc', '--import', join(import.meta.dirname, 'lib', 'memory-report.mjs')]
const env = { BENCH_MEMORY_FILE: memoryFile }

console.log(`footprint vs a bare node:http process — ${machine()}`)
if (!compiledBuilt()) {
  console.log('  npm run build first: this bench measures the compiled daemon')
  process.exit(1)
}
const emulator = await startEmulatorProcess()
const yaml = daemonYaml(emulator, '  mi:\n    managedIdentity: {}', `cache:\n  maxTokens: ${tokens}`)
const settle = () => new Promise((resolve) => setTimeout(resolve, 1000))

/** CPU time (ms) every thread of `pid` has run, from the scheduler's nanosecond counters. */
function cpuMsAllThreads(pid: number): number {
  let ns = 0
  for (const task of readdirSync(`/proc/${pid}/task`))
    ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0])
  return ns / 1e6
}

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
  cpuMs: number
  idleRssMb: number
  /** The daemon's first token (a miss through the emulator's IMDS): CPU it took, RSS 1 s later. */
  firstCpuMs?: number
  firstRssMb?: number
}

const measure = async (started: Promise<Started & { url?: string }>): Promise<Start> => {
  const s = await started
  const cpuMs = cpuMsAllThreads(s.pid)
  await settle()
  const idleRssMb = rssMb(s.pid)
  let first = {}
  if (s.url) {
    // What start-up leaves for later (undici, the first token's code) is paid here.
    const before = cpuMsAllThreads(s.pid)
    const res = await request(`${s.url}/token?resource=https%3A%2F%2Ffirst.example.com`, {
      headers: { Metadata: 'true' },
      dispatcher: firstTokenAgent,
    })
    if (res.statusCode !== 200) throw new Error(`first token: ${res.statusCode}`)
    await res.body.arrayBuffer()
    const firstCpuMs = cpuMsAllThreads(s.pid) - before
    await settle()
    first = { firstCpuMs, firstRssMb: rssMb(s.pid) }
  }
  await s.stop()
  return { readyMs: s.startMs, cpuMs, idleRssMb, ...first }
}
const firstTokenAgent = new Agent({ pipelining: 0 })
const bare = () => measure(startBare('{}', { 'content-type': 'application/json' }))

const nodeArgs = shippedNodeArgs()
const compileCache = join(scratch, 'compile-cache')
mkdirSync(compileCache)
execFileSync(process.execPath, [
  join(repoRoot, 'sidecar', 'scripts', 'warm-compile-cache.mjs'),
  compiledEntry,
  compileCache,
  ...nodeArgs,
])
const variants: [string, () => Promise<Start>][] = [
  [
    `shipped (bundle, ${nodeArgs.join(' ') || 'no Node options'}, compile cache)`,
    () =>
      measure(
        startDaemon(yaml, { entry: compiledEntry, nodeArgs, env: { NODE_COMPILE_CACHE: compileCache } }),
      ),
  ],
  ['bundle, Node defaults', () => measure(startDaemon(yaml, { entry: compiledEntry }))],
  [
    'modules (dist/main.js, before the bundle)',
    () => measure(startDaemon(yaml, { entry: compiledEntry, env: { BENCH_ENTRY: 'dist' } })),
  ],
]
console.log(`${rounds} rounds of A B B A per variant (A = bare node:http, B = the compiled daemon), medians`)
console.log(
  'variant                                            | ready wall ms (ratio) | ready CPU ms (ratio) | idle RSS MB (ratio) | first token: CPU ms, RSS MB (ratio)',
)
for (const [label, daemon] of variants) {
  const { a, b } = await interleaved(rounds, bare, daemon)
  const m = (rs: Start[], key: keyof Start) => median(rs.map((r) => r[key] ?? Number.NaN))
  const cell = (key: keyof Start, digits: number) =>
    `${fixed(m(a, key), digits)} / ${fixed(m(b, key), digits)} (${fixed(m(b, key) / m(a, key), 2)})`
  console.log(
    `${label.padEnd(50)} | ${cell('readyMs', 0).padEnd(21)} | ${cell('cpuMs', 0).padEnd(19)} | ${cell('idleRssMb', 1).padEnd(19)} | ${fixed(m(b, 'firstCpuMs'), 0)}, ${fixed(m(b, 'firstRssMb'), 1)} (${fixed(m(b, 'firstRssMb') / m(a, 'idleRssMb'), 2)})`,
  )
}

// Modules loaded at start, counted by a module.registerHooks load hook.
const modulesFile = join(scratch, 'modules.txt')
for (const [label, extra] of [
  ['bundle', {}],
  ['modules', { BENCH_ENTRY: 'dist' }],
] as const) {
  writeFileSync(modulesFile, '')
  const s = await startDaemon(yaml, {
    entry: compiledEntry,
    nodeArgs: ['--import', join(import.meta.dirname, 'lib', 'count-modules.mjs')],
    env: { BENCH_MODULES_FILE: modulesFile, ...extra },
  })
  await s.stop()
  const urls = readFileSync(modulesFile, 'utf8').split('\n').filter(Boolean)
  const own = urls.filter((u) => !u.startsWith('node:'))
  console.log(
    `  modules loaded to ready (${label}): ${own.length} files + ${urls.length - own.length} node: built-ins`,
  )
}

// Memory per cached token: fill the cache with `tokens` distinct resources (shipped flags).
const filled = await startDaemon(yaml, {
  entry: compiledEntry,
  nodeArgs: [...nodeArgs, ...preload],
  env,
})
const before = await memory(filled)
const dispatcher = new Agent({ connections: 16 })
let next = 0
let peakRss = rssMb(filled.pid)
await Promise.all(
  Array.from({ length: 16 }, async () => {
    while (next < tokens) {
      const i = next++
      const res = await request(
        `${filled.url}/token?resource=${encodeURIComponent(`https://r${i}.example.com`)}`,
        { headers: { Metadata: 'true' }, dispatcher },
      )
      if (res.statusCode !== 200) throw new Error(`token ${i}: ${res.statusCode}`)
      await res.body.arrayBuffer()
      if (i % 500 === 0) peakRss = Math.max(peakRss, rssMb(filled.pid))
    }
  }),
)
await dispatcher.close()
await firstTokenAgent.close()
const after = await memory(filled)
await filled.stop()
const perToken = (bytes: number) => fixed(bytes / tokens / 1024, 2)
console.log(
  `  per cached token (${tokens} filled, shipped flags, after GC): heap +${perToken(after.heapUsed - before.heapUsed)} KB, RSS +${perToken(after.rss - before.rss)} KB; RSS peak while filling ${fixed(peakRss)} MB (idle heap ${fixed(before.heapUsed / 1048576)} MB)`,
)
await emulator.stop()
