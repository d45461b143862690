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
  { readiness, logger, graceMs }: { readiness: Readiness; logger: Logger; graceMs: number },
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
  const timer = setTimeout(
    () => {
      logger.warn('grace period over; closing remaining connections')
      for (const s of servers) s.closeAllConnections()
    },
    Math.max(0, deadline - Date.now()),
  )
  await closed
  clearTimeout(timer)
}
