import type { Runtime } from '../core/runtime.ts'

/**
 * The access log line. Successful answers are logged at debug only: at info, one synchronous JSON
 * line per cache hit was the largest single cost of a cached /token. Failures are logged at info or
 * above by `logError` (with their correlation id) and here again at info with the status. Probes
 * and scrapes (`operations`) come every few seconds: debug whatever their status.
 */
export function logRequest(
  runtime: Runtime,
  method: string,
  path: string,
  status: number,
  started: number,
  correlationId: string | undefined,
  options: { operations?: boolean } = {},
): void {
  const level = status >= 400 && !options.operations ? 'info' : 'debug'
  if (!runtime.logger.isLevelEnabled(level)) return
  // Path only: the query names resources, never secrets, but keep lines short and uniform.
  runtime.logger[level](
    {
      method,
      path,
      status,
      ms: Math.round(performance.now() - started),
      ...(correlationId === undefined ? {} : { correlation_id: correlationId }),
    },
    'request',
  )
}
