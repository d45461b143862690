import type { Server } from 'node:http'
import type { Logger } from '../core/log.ts'
import type { Readiness } from '../http/readiness.ts'

/**
 * The listening half of a graceful shutdown, once readiness fails: keep serving until in-flight
 * requests finish, then close the servers; after `graceMs` remaining connections are cut.
 * Resolves when every server is closed.
 */
export async function drainServers(
  servers: readonly Server[],
  {
    readiness,
    logger,
    graceMs,
    abortInFlight,
  }: {
    readiness: Readiness
    logger: Logger
    graceMs: number
    /**
     * Called when the grace period is over, before connections are cut: ends the requests still
     * waiting (on upstream) with an answer (503 shutting_down, Retry-After), so their callers get a
     * clear error rather than a reset connection; whatever is still unanswered shortly after is cut.
     */
    abortInFlight?: () => void
  },
): Promise<void> {
  // Keep listening briefly so probes see 503 rather than a refused connection, and until
  // in-flight requests finish; the grace period bounds both.
  const deadline = Date.now() + Math.max(0, graceMs - 500)
  const linger = new Promise<void>((resolve) => setTimeout(resolve, Math.min(1000, graceMs / 4)).unref())
  await Promise.race([
    Promise.all([linger, readiness.idle()]),
    new Promise<void>((resolve) => setTimeout(resolve, deadline - Date.now()).unref()),
  ])
  const closed = Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))))
  // A keep-alive connection whose last response is still being written is not idle yet: close
  // idle connections again until the servers are closed, rather than wait for the client to drop it.
  const closeIdle = () => {
    for (const s of servers) s.closeIdleConnections()
  }
  closeIdle()
  const sweeper = setInterval(closeIdle, 50)
  void closed.then(() => clearInterval(sweeper))
  let cut: NodeJS.Timeout | undefined
  const timer = setTimeout(
    () => {
      logger.warn('grace period over; closing remaining connections')
      abortInFlight?.()
      // The aborted requests' answers are written at once; then whatever is left is cut, still
      // within the grace period (the deadline keeps 500 ms of it).
      cut = setTimeout(
        () => {
          for (const s of servers) s.closeAllConnections()
        },
        Math.min(abortFlushMs, graceMs / 5),
      )
    },
    Math.max(0, deadline - Date.now()),
  )
  await closed
  clearTimeout(timer)
  clearTimeout(cut)
}

/** How long the requests ended at the grace deadline get to write their 503 before connections are cut. */
const abortFlushMs = 200
