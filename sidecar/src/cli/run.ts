import type { SidecarConfig } from '../config/types.ts'
import { Daemon } from '../daemon.ts'
import { createLogger } from '../log.ts'

/**
 * Runs the daemon as a process: one shutdown path for SIGTERM, SIGINT and fatal errors. The first
 * signal drains (readiness fails at once, in-flight requests finish, exit 0 within the grace
 * period); a second signal exits 1 at once.
 */
export async function runDaemonProcess(config: SidecarConfig): Promise<number> {
  const logger = createLogger({ level: config.log.level })
  let daemon: Daemon
  try {
    daemon = await Daemon.start({ config, logger })
  } catch (error) {
    logger.fatal({ error: error instanceof Error ? error.message : String(error) }, 'failed to start')
    return 1
  }
  return new Promise<number>((resolve) => {
    let stopping = false
    const stop = (why: string, code: number) => {
      if (stopping) {
        logger.warn({ signal: why }, 'second signal; exiting now')
        process.exit(1)
      }
      stopping = true
      logger.info({ signal: why }, 'shutting down')
      const hardStop = setTimeout(() => {
        logger.error('shutdown did not finish within the grace period; exiting')
        process.exit(1)
      }, config.shutdownGraceMs + 1000)
      hardStop.unref()
      void daemon.shutdown(config.shutdownGraceMs).then(
        () => resolve(code),
        (error: unknown) => {
          logger.error({ error: error instanceof Error ? error.message : String(error) }, 'shutdown failed')
          resolve(1)
        },
      )
    }
    process.on('SIGTERM', () => stop('SIGTERM', 0))
    process.on('SIGINT', () => stop('SIGINT', 0))
    process.on('uncaughtException', (error) => {
      logger.fatal({ error: error.message, stack: error.stack }, 'uncaught exception')
      stop('uncaughtException', 1)
    })
    process.on('unhandledRejection', (reason) => {
      logger.fatal(
        { error: reason instanceof Error ? reason.message : String(reason) },
        'unhandled rejection',
      )
      stop('unhandledRejection', 1)
    })
  })
}
