/**
 * Child processes for the bench: the daemon (its real bin), a bare node:http server, the emulator
 * and the load generator each run in their own process, so what is measured is one process's work.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import type { ChurnResult, ClosedResult, LoadRequest, StormResult } from './load-worker.ts'

const here = import.meta.dirname
export const repoRoot = join(here, '..', '..')
export const sidecarBin = join(repoRoot, 'sidecar', 'bin', 'credential-sidecar.js')
export const scratch = mkdtempSync(join(tmpdir(), 'sidecar-bench-'))

/** A process whose stdout goes to a file (as a container runtime's log file would take it). */
export interface Started {
  child: ChildProcess
  pid: number
  /** ms from spawn to the awaited log line. */
  startMs: number
  /** The parsed log line that was awaited. */
  line: Record<string, unknown>
  /** Every JSON line logged up to it. */
  lines: Record<string, unknown>[]
  stop(): Promise<void>
}

let counter = 0

/**
 * Spawns `node <args>` with stdout to a file and waits for a JSON line for which `ready` is true.
 * Polling the file costs the child nothing.
 */
export async function startLogged(
  args: string[],
  ready: (line: Record<string, unknown>) => boolean,
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<Started> {
  const logFile = join(scratch, `out-${process.pid}-${counter++}.log`)
  const out = openSync(logFile, 'w')
  const started = performance.now()
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', out, 'inherit'],
    env: { ...process.env, ...options.env },
  })
  const deadline = started + (options.timeoutMs ?? 30_000)
  for (;;) {
    const text = readFileSync(logFile, 'utf8')
    const lines: Record<string, unknown>[] = []
    for (const raw of text.split('\n')) {
      if (!raw.startsWith('{') || !raw.endsWith('}')) continue
      const line = JSON.parse(raw) as Record<string, unknown>
      lines.push(line)
      if (ready(line)) {
        const startMs = performance.now() - started
        return { child, pid: child.pid ?? 0, startMs, line, lines, stop: () => stop(child) }
      }
    }
    if (child.exitCode !== null) throw new Error(`${args.join(' ')} exited early:\n${text}`)
    if (performance.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`${args.join(' ')} not ready in time:\n${text}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}

export function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    child.once('exit', () => resolve())
    child.kill('SIGKILL')
  })
}

/** Writes a daemon config to a scratch file. */
export function configFile(yaml: string): string {
  const file = join(scratch, `config-${counter++}.yaml`)
  writeFileSync(file, yaml)
  return file
}

/** The daemon's real bin with a config file; resolves at `{"msg":"ready"}`. */
export async function startDaemon(
  yaml: string,
  options: { nodeArgs?: string[]; env?: Record<string, string>; entry?: string } = {},
): Promise<Started & { url: string; port: number }> {
  const started = await startLogged(
    [...(options.nodeArgs ?? []), options.entry ?? sidecarBin, '--config', configFile(yaml)],
    (line) => line['msg'] === 'ready',
    options.env ? { env: options.env } : {},
  )
  // The listening line precedes ready and carries the real port.
  const url = String(started.lines.find((l) => l['msg'] === 'listening')?.['url'] ?? '')
  return { ...started, url, port: Number(new URL(url).port) }
}

/** The compiled daemon (`npm run build`), started as an installed package's bin starts it. */
export const compiledEntry = join(here, 'compiled-entry.mjs')
export const compiledBuilt = (): boolean => existsSync(join(repoRoot, 'sidecar', 'dist', 'main.js'))

/** A bare node:http server answering every request with `body` and `headers`. */
export async function startBare(
  body: string,
  headers: Record<string, string>,
  nodeArgs: string[] = [],
): Promise<Started & { port: number }> {
  const bodyFile = join(scratch, `body-${counter++}.json`)
  writeFileSync(bodyFile, JSON.stringify({ body, headers }))
  const started = await startLogged(
    [...nodeArgs, join(here, 'bare-server.mjs'), bodyFile],
    (line) => line['msg'] === 'listening',
  )
  return { ...started, port: Number(started.line['port']) }
}

/** The emulator in its own process: its CPU is not the daemon's. */
export interface EmulatorProcess {
  imdsUrl: string
  entraUrl: string
  caFile: string
  /** Upstream calls the emulator has answered, by endpoint. */
  calls(): Promise<Record<string, number>>
  resetCalls(): Promise<void>
  stop(): Promise<void>
}

export async function startEmulatorProcess(): Promise<EmulatorProcess> {
  const child = fork(join(here, 'emulator-process.ts'), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const first = await nextMessage<{ imdsUrl: string; entraUrl: string; caPem: string }>(child)
  const caFile = join(scratch, 'emulator-ca.pem')
  writeFileSync(caFile, first.caPem)
  return {
    imdsUrl: first.imdsUrl,
    entraUrl: first.entraUrl,
    caFile,
    calls: async () => {
      child.send('calls')
      return nextMessage<Record<string, number>>(child)
    },
    resetCalls: async () => {
      child.send('reset')
      await nextMessage(child)
    },
    stop: () => stop(child),
  }
}

function nextMessage<T>(child: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`child exited (${code})`))
    child.once('exit', onExit)
    child.once('message', (m) => {
      child.off('exit', onExit)
      resolve(m as T)
    })
  })
}

/** Runs the load generator in its own process. */
export async function load(request: LoadRequest & { mode: 'closed' }): Promise<ClosedResult>
export async function load(request: LoadRequest & { mode: 'storm' }): Promise<StormResult>
export async function load(request: LoadRequest & { mode: 'churn' }): Promise<ChurnResult>
export async function load(request: LoadRequest): Promise<ClosedResult | StormResult | ChurnResult> {
  const child = fork(join(here, 'load-worker.ts'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  await new Promise((resolve) => child.once('spawn', resolve))
  child.send(request)
  return nextMessage(child)
}

/** Resident set size of a process (kB from /proc, returned in MB). */
export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN)
  return kb / 1024
}

/**
 * CPU time a process has used (user + system, ms), from /proc; with `mainThread`, only its main
 * thread's (the event loop: not libuv's pool, where key generation runs). The kernel counts in clock
 * ticks (10 ms at the usual USER_HZ of 100), so differences are exact only to a tick; unlike wall
 * time it does not grow when other processes load the machine.
 */
export function cpuMs(pid: number, mainThread = false): number {
  const stat = readFileSync(mainThread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may hold spaces): utime is the 14th field, stime the 15th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10
}

/** The machine, for the record. */
export function machine(): string {
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU'
  const cores = readFileSync('/proc/cpuinfo', 'utf8').match(/^processor\s*:/gm)?.length ?? 0
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  return `${cores} cores (nproc), ${cpu}, Node ${process.version}, load average at start ${load}`
}

/**
 * The Node.js options the container image runs the daemon with: those between `node` and the bin
 * in the Dockerfile's ENTRYPOINT (V8 heap flags), so the benches measure what ships.
 * BENCH_NODE_ARGS (space-separated) overrides them, e.g. BENCH_NODE_ARGS= for Node's defaults.
 */
export function shippedNodeArgs(): string[] {
  const override = process.env['BENCH_NODE_ARGS']
  if (override !== undefined) return override.split(' ').filter(Boolean)
  const dockerfile = readFileSync(join(repoRoot, 'Dockerfile'), 'utf8')
  const entrypoint = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(dockerfile)?.[1]
  if (!entrypoint) return []
  const argv = JSON.parse(entrypoint) as string[]
  const bin = argv.findIndex((arg) => arg.endsWith('credential-sidecar.js'))
  return argv.slice(1, bin < 0 ? 1 : bin)
}

/**
 * The daemon as the image runs it: the compiled bundle when built (else the sources), with the
 * image's Node options.
 */
export function shippedDaemon(): { entry?: string; nodeArgs: string[]; label: string } {
  const nodeArgs = shippedNodeArgs()
  const flags = nodeArgs.length ? ` ${nodeArgs.join(' ')}` : ''
  return compiledBuilt()
    ? { entry: compiledEntry, nodeArgs, label: `compiled daemon${flags}` }
    : { nodeArgs, label: `daemon from sources (npm run build for the compiled one)${flags}` }
}

/** Samples a process's RSS every `everyMs` until stopped: the peak and the last sample (MB). */
export function sampleRss(pid: number, everyMs = 100): { stop(): { peakMb: number; lastMb: number } } {
  let peakMb = rssMb(pid)
  let lastMb = peakMb
  const timer = setInterval(() => {
    try {
      lastMb = rssMb(pid)
      peakMb = Math.max(peakMb, lastMb)
    } catch {
      // the process is gone
    }
  }, everyMs)
  return {
    stop: () => {
      clearInterval(timer)
      lastMb = rssMb(pid)
      peakMb = Math.max(peakMb, lastMb)
      return { peakMb, lastMb }
    },
  }
}
