import type { IdentityConfig } from '../config/types.ts'
import type { Runtime } from '../core/runtime.ts'
import type { Readiness } from '../http/readiness.ts'
import { normaliseScope } from '../tokens/scope.ts'
import type { TokenService } from '../tokens/token-service.ts'
import { exponentialBackoff } from '../core/backoff.ts'

const firstRetryMs = 1000
const maxRetryMs = 60_000

/**
 * Warm identities acquire their credential (and warmResource token) with backoff; /readyz waits.
 * Each identity retries on its own until it is warm or `signal` (the drain) stops it. Logs `ready`
 * once nothing is pending, at once when no identity is marked warm.
 */
export function warmUp(deps: {
  runtime: Runtime
  tokens: TokenService
  readiness: Readiness
  identities: Iterable<IdentityConfig>
  signal: AbortSignal
}): void {
  const { runtime, tokens, readiness, signal } = deps
  const { logger, clock } = runtime
  const warmIdentities = [...deps.identities].filter((i) => i.warm)
  for (const identityConfig of warmIdentities) readiness.warmPending(identityConfig.name, 'starting')
  const announceReady = () => {
    if (readiness.ready) logger.info('ready')
  }
  if (warmIdentities.length === 0) return announceReady()
  for (const identityConfig of warmIdentities) {
    const identity = tokens.identity(identityConfig.name)
    void (async () => {
      for (let attempt = 0; !signal.aborted; attempt++) {
        try {
          await identity.currentBinding(signal)
          if (identityConfig.warmResource) {
            await tokens.getToken(identity, normaliseScope({ resource: identityConfig.warmResource }))
          }
          readiness.warmDone(identity.name)
          logger.info({ identity: identity.name }, 'identity warm')
          return announceReady()
        } catch (error) {
          const reason = error instanceof Error ? error.message : String(error)
          readiness.warmPending(identity.name, reason)
          const delay = exponentialBackoff(firstRetryMs, maxRetryMs, attempt + 1)
          logger.warn({ identity: identity.name, reason, retry_in_ms: delay }, 'warming identity failed')
          await clock.sleep(delay, signal).catch(() => {})
        }
      }
    })()
  }
}
