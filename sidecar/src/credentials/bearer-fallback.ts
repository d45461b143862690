import { isSidecarError } from '../core/errors.ts'
import type { Runtime } from '../core/runtime.ts'
import type { AcquiredToken, TokenType } from '../model/token.ts'

export interface BearerFallback {
  /** `allowBearerFallback`. */
  allowed: boolean
  /** What the bound request asked for: a Bearer answer to `mtls_pop` is a fallback too. */
  requested: TokenType
  runtime: Runtime
  identity: string
  /** The credential source's label, when the identity has a chain to choose from. */
  credential?: string
  /**
   * When Entra refuses bound tokens: how the Bearer token is obtained instead (a log field, the end
   * of the log message, and the request). Absent: there is no unbound way (a FIC leg 2), the refusal
   * stands.
   */
  onRefusal?: {
    via: 'imds_v1' | 'private_key_jwt'
    served: string
    bearer(): Promise<AcquiredToken>
  }
}

/**
 * A bound token, or — with `allowBearerFallback` on — a genuine Bearer token, logged
 * (`event: bearer_fallback`) and counted (`credential_sidecar_bearer_fallback_total`), when:
 * - Entra refuses bound tokens for the tenant (AADSTS3921996, reason `binding_not_allowed`): the
 *   token is obtained without the binding (`onRefusal`), as Azure.Identity for .NET retries a
 *   refused bound request as a plain one;
 * - Entra answers `token_type: Bearer` to an mtls_pop request (the token client accepts that answer
 *   only for a request sent with `allowBearerFallback`, and counts nothing).
 * The one place that decides, logs and counts the fallback, for every source that offers it.
 */
export async function boundOrBearerFallback(
  bound: () => Promise<AcquiredToken>,
  fallback: BearerFallback,
): Promise<AcquiredToken> {
  let token: AcquiredToken
  try {
    token = await bound()
  } catch (error) {
    const onRefusal = fallback.onRefusal
    if (!fallback.allowed || !onRefusal || !isSidecarError(error) || error.reason !== 'binding_not_allowed')
      throw error
    notice(
      fallback,
      { aadsts: error.upstream?.errorCodes, via: onRefusal.via },
      `Entra does not allow bound tokens for this tenant; serving a Bearer token ${onRefusal.served} because allowBearerFallback is on`,
    )
    return onRefusal.bearer()
  }
  if (fallback.allowed && fallback.requested === 'mtls_pop' && token.tokenType === 'Bearer') {
    notice(
      fallback,
      { via: 'answered' },
      'mtls_pop was requested but Entra answered Bearer; serving Bearer because allowBearerFallback is on',
    )
  }
  return token
}

function notice(fallback: BearerFallback, fields: Record<string, unknown>, message: string): void {
  const { logger, metrics } = fallback.runtime
  logger.warn(
    {
      identity: fallback.identity,
      ...(fallback.credential === undefined ? {} : { credential: fallback.credential }),
      event: 'bearer_fallback',
      ...fields,
    },
    message,
  )
  metrics.bearerFallbacks.inc({ identity: fallback.identity })
}
