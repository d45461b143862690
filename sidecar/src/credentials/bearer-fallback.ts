import { isSidecarError } from '../core/errors.ts'
import type { Runtime } from '../core/runtime.ts'
import type { AcquiredToken } from '../model/token.ts'

export interface BearerFallback {
  /** `allowBearerFallback`. */
  allowed: boolean
  runtime: Runtime
  identity: string
  /** The credential source's label, when the identity has a chain to choose from. */
  credential?: string
  /** How the Bearer token is obtained: a log field, and the end of the log message. */
  via: { field: 'imds_v1' | 'private_key_jwt'; served: string }
  bearer(): Promise<AcquiredToken>
}

/**
 * A bound token, or — when Entra refuses bound tokens for the tenant (AADSTS3921996, reason
 * `binding_not_allowed`) and `allowBearerFallback` is on — a genuine Bearer token obtained without
 * the binding, as Azure.Identity for .NET retries a refused bound request as a plain one. The one
 * place that decides, logs and counts the fallback for every source that offers it.
 */
export async function boundOrBearerFallback(
  bound: () => Promise<AcquiredToken>,
  fallback: BearerFallback,
): Promise<AcquiredToken> {
  try {
    return await bound()
  } catch (error) {
    if (!fallback.allowed || !isSidecarError(error) || error.reason !== 'binding_not_allowed') throw error
    const { logger, metrics } = fallback.runtime
    logger.warn(
      {
        identity: fallback.identity,
        ...(fallback.credential === undefined ? {} : { credential: fallback.credential }),
        event: 'bearer_fallback',
        aadsts: error.upstream?.errorCodes,
        via: fallback.via.field,
      },
      `Entra does not allow bound tokens for this tenant; serving a Bearer token ${fallback.via.served} because allowBearerFallback is on`,
    )
    metrics.bearerFallbacks.inc({ identity: fallback.identity })
    return fallback.bearer()
  }
}
