import { Writable } from 'node:stream'
import { SystemClock, type Clock, type Random } from '../../sidecar/src/core/clock.ts'
import { createLogger, type Logger } from '../../sidecar/src/core/log.ts'
import { Metrics } from '../../sidecar/src/core/metrics.ts'
import type { Runtime } from '../../sidecar/src/core/runtime.ts'
import { tlsConnectOptions, trustedCas } from '../../sidecar/src/upstream/tls.ts'
import { LazyAgent } from '../../sidecar/src/upstream/undici.ts'

/** Every log line a daemon or component wrote, raw (for secret scans) and parsed. */
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

/** A debug-level logger writing into a fresh capture. */
export function capturingLogger(): { logger: Logger; logs: LogCapture } {
  const logs = new LogCapture()
  return { logger: createLogger({ level: 'debug', destination: logs }), logs }
}

export interface TestRuntimeOptions {
  /** Default: the system clock; pass a `FakeClock` to drive timers by hand. */
  clock?: Clock
  /** Default: always 0.5, the middle of every jitter range, so schedules are exact. */
  random?: Random
  /** Default: a debug logger into `logs`. */
  logger?: Logger
  /** CA certificates (PEM) to trust besides Node's, e.g. the emulator's (`upstream.caFile`). */
  trust?: string[]
  /** Per-attempt upstream timeout; default 5000 ms. */
  timeoutMs?: number
}

export interface TestRuntime extends Runtime {
  /** What the runtime's logger wrote (empty when a `logger` was given). */
  logs: LogCapture
  /** Closes the dispatcher. */
  dispose(): Promise<void>
}

/**
 * The `Runtime` components get in tests: the given (or system) clock, a fixed random, a capturing
 * logger, fresh metrics, and a loopback dispatcher trusting `trust` the way the daemon's trusts
 * `upstream.caFile`.
 */
export function testRuntime(options: TestRuntimeOptions = {}): TestRuntime {
  const { logger, logs } = options.logger
    ? { logger: options.logger, logs: new LogCapture() }
    : capturingLogger()
  const extraCaPem = options.trust ?? []
  const ca = trustedCas(extraCaPem)
  const dispatcher = new LazyAgent(() => ({
    keepAliveTimeout: 1000,
    ...(ca ? { connect: tlsConnectOptions(ca) } : {}),
  }))
  return {
    clock: options.clock ?? new SystemClock(),
    random: options.random ?? (() => 0.5),
    logger,
    logs,
    metrics: new Metrics(),
    dispatcher,
    extraCaPem,
    timeoutMs: options.timeoutMs ?? 5000,
    dispose: () => dispatcher.close(),
  }
}
