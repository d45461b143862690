import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { TestContext } from 'node:test'
import { parseConfig } from '../../sidecar/src/config/load.ts'
import type { Clock } from '../../sidecar/src/core/clock.ts'
import { Daemon } from '../../sidecar/src/daemon/daemon.ts'
import type { SocketTable } from '../../sidecar/src/http/callers/socket-table.ts'
import { startEmulator, type Emulator, type EmulatorOptions } from '../../sidecar/src/emulator/emulator.ts'
import { createLogger } from '../../sidecar/src/core/log.ts'

/** Every log line a daemon wrote, raw (for secret scans) and parsed. */
export class LogCapture extends Writable {
  readonly lines: string[] = []

  override _write(chunk: Buffer, _encoding: string, callback: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) if (line) this.lines.push(line)
    callback()
  }

  get records(): Record<string, unknown>[] {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>)
  }

  get text(): string {
    return this.lines.join('\n')
  }
}

export interface Stack {
  emulator: Emulator
  daemon: Daemon
  url: string
  logs: LogCapture
  /** GET a daemon route with `Metadata: true` (unless overridden). */
  get(path: string, headers?: Record<string, string>): Promise<Response>
}

export interface StackOptions {
  /**
   * YAML for everything but `listen` and `upstream` (imdsEndpoint, authorityHost = the emulated
   * Entra, caFile = the emulator's CA); `${NAME}` values come from `env`.
   */
  configYaml?: (emulator: Emulator) => string
  /** Extra lines under `listen:` and `upstream:`, indented by two spaces, e.g. `  requestDeadlineMs: 800\n`. */
  listenYaml?: string
  upstreamYaml?: string
  emulator?: EmulatorOptions
  clock?: Clock
  random?: () => number
  env?: Record<string, string>
  /** `listen.host` (default 127.0.0.1), e.g. `"::1"`. */
  listenHost?: string
  /** callers.allow: where connection owners are read from (default the real /proc). */
  socketTable?: SocketTable
  /** callers.allow: the passwd file `user:` entries resolve through (default /etc/passwd). */
  passwdFile?: string
}

/** Emulator + daemon on 127.0.0.1:0, both torn down after the test. */
export async function startStack(t: TestContext, options: StackOptions = {}): Promise<Stack> {
  const emulator = await startEmulator(
    options.clock ? { ...options.emulator, clock: options.clock } : (options.emulator ?? {}),
  )
  t.after(() => emulator.close())
  const body = options.configYaml?.(emulator) ?? 'identities:\n  mi:\n    managedIdentity: {}\n'
  // Trust the emulator's CA for Entra and the mTLS endpoints, as an operator would with caFile.
  const caFile = join(mkdtempSync(join(tmpdir(), 'sidecar-ca-')), 'emulator-ca.pem')
  writeFileSync(caFile, emulator.caPem)
  const yaml = `listen:\n  host: ${options.listenHost ?? '127.0.0.1'}\n  port: 0\n${options.listenYaml ?? ''}upstream:\n  imdsEndpoint: ${emulator.imdsUrl}\n  authorityHost: ${emulator.entraUrl}\n  caFile: ${caFile}\n${options.upstreamYaml ?? ''}${body}`
  const config = parseConfig(yaml, {
    source: 'test.yaml',
    env: { ...options.env },
    ...(options.passwdFile ? { passwdFile: options.passwdFile } : {}),
  })
  const logs = new LogCapture()
  const daemon = await Daemon.start({
    config,
    logger: createLogger({ level: 'debug', destination: logs }),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.random ? { random: options.random } : {}),
    ...(options.socketTable ? { socketTable: options.socketTable } : {}),
  })
  t.after(() => daemon.shutdown(1000))
  return {
    emulator,
    daemon,
    url: daemon.url,
    logs,
    get: (path, headers = {}) => fetch(`${daemon.url}${path}`, { headers: { Metadata: 'true', ...headers } }),
  }
}

/** Reads a JSON body, typed loosely for assertions. */
export async function json(res: Response): Promise<Record<string, any>> {
  return (await res.json()) as Record<string, any>
}
