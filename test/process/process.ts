import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { TestContext } from 'node:test'

export const binPath = fileURLToPath(new URL('../../sidecar/bin/credential-sidecar.js', import.meta.url))

export interface RunningProcess {
  child: ChildProcess
  stdout: string[]
  stderr: string[]
  /** Resolves with the first JSON log line whose msg equals `msg`. */
  waitFor(msg: string, timeoutMs?: number): Promise<Record<string, any>>
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

export interface StartOptions {
  /** A command the node process is started through (e.g. one that drops privileges). */
  launcher?: string[]
  /** Give the process only `env`, not this process's environment too (as a container would). */
  isolatedEnv?: boolean
  /** What stands for `node BIN` (e.g. `podman run … IMAGE`, whose entry point is the bin). */
  entry?: string[]
}

/**
 * Starts the real bin with this Node (the test runner's, i.e. Node 24); `bin` another copy of it
 * (an installed package's).
 */
export function startProcess(
  t: TestContext,
  args: string[],
  env: Record<string, string> = {},
  bin: string = binPath,
  options: StartOptions = {},
): RunningProcess {
  const [command, ...commandArgs] = [
    ...(options.launcher ?? []),
    ...(options.entry ?? [process.execPath, bin]),
    ...args,
  ]
  const child = spawn(command!, commandArgs, {
    env: options.isolatedEnv ? env : { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  const stdout: string[] = []
  const stderr: string[] = []
  const waiters: { msg: string; resolve: (r: Record<string, any>) => void }[] = []
  let buffer = ''
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString('utf8')
    let nl: number
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl)
      buffer = buffer.slice(nl + 1)
      stdout.push(line)
      try {
        const record = JSON.parse(line) as Record<string, any>
        for (const w of waiters.filter((w) => w.msg === record['msg'])) {
          waiters.splice(waiters.indexOf(w), 1)
          w.resolve(record)
        }
      } catch {
        // not a log line
      }
    }
  })
  child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk.toString('utf8')))
  // 'close', not 'exit': exit can fire before the child's stdout has been read to the end.
  const exit = once(child, 'close').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }))
  return {
    child,
    stdout,
    stderr,
    exit,
    waitFor(msg, timeoutMs = 30_000) {
      const seen = stdout
        .map((l) => {
          try {
            return JSON.parse(l)
          } catch {
            return undefined
          }
        })
        .find((r) => r?.msg === msg)
      if (seen) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no "${msg}" log line within ${timeoutMs} ms; stderr: ${stderr.join('')}`)),
          timeoutMs,
        )
        waiters.push({
          msg,
          resolve: (r) => {
            clearTimeout(timer)
            resolve(r)
          },
        })
        void exit.then(() => {
          clearTimeout(timer)
          reject(new Error(`process exited before "${msg}"; stderr: ${stderr.join('')}`))
        })
      })
    },
  }
}
