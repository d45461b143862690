import type { SidecarConfig } from '../config/types.ts'
import { Daemon } from '../daemon/daemon.ts'
import { createLogger } from '../core/log.ts'

/**
 * Runs the daemon as a process: one shutdown path for SIGTERM, SIGINT and fatal errors. The first
 * signal drains (readiness fails at once, in-flight requests finish, exit 0 within the grace
 * period); a second signal exits 1 at once. Handlers are installed before the daemon starts, so a
 * signal that arrives while it starts is a graceful stop too, never Node's default kill.
 */
export async function runDaemonProcess(config: SidecarConfig): Promise<number> {
  const logger = createLogger({ level: config.log.level })
  let requested: { why: string; code: number } | undefined
  let onStop: (() => void) | undefined
  const stopRequested = new Promise<void>((resolve) => (onStop = resolve))
  const request = (why: string, code: number) => {
    if (requested) {
      logger.warn({ signal: why }, 'second signal; exiting now')
      process.exit(1)
    }
    requested = { why, code }
    onStop?.()
  }
  process.on('SIGTERM', () => request('SIGTERM', 0))
  process.on('SIGINT', () => request('SIGINT', 0))
  process.on('uncaughtException', (error) => {
    logger.fatal({ error: error.message, stack: error.stack }, 'uncaught exception')
    request('uncaughtException', 1)
  })
  process.on('unhandledRejection', (reason) => {
    logger.fatal({ error: reason instanceof Error ? reason.message : String(reason) }, 'unhandled rejection')
    request('unhandledRejection', 1)
  })

  let daemon: Daemon
  try {
    daemon = await Daemon.start({ config, logger })
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    logger.fatal({ error: message }, 'failed to start')
    // Also one plain line on stderr, where a config error goes: an operator starting the bin by
    // hand (or a test harness) sees why without parsing the JSON log (e.g. `callers.secretFile:
    // cannot read …`, a port in use). Messages never carry a secret value.
    process.stderr.write(`credential-sidecar: failed to start: ${message}\n`)
    return 1
  }
  await stopRequested
  const { why, code } = requested ?? { why: 'unknown', code: 1 }
  logger.info({ signal: why }, 'shutting down')
  const hardStop = setTimeout(() => {
    logger.error('shutdown did not finish within the grace period; exiting')
    process.exit(1)
  }, config.shutdownGraceMs + 1000)
  hardStop.unref()
  try {
    await daemon.shutdown(config.shutdownGraceMs)
    return code
  } catch (error) {
    logger.error({ error: error instanceof Error ? error.message : String(error) }, 'shutdown failed')
    return 1
  }
}
