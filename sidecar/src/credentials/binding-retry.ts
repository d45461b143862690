import { isSidecarError, type SidecarError } from '../core/errors.ts'
import type { BindingCertificate } from '../model/binding.ts'

/** Upstream refused the certificate presented or signed with: invalid_client, or a failed TLS handshake. */
function isBindingRejected(error: unknown): error is SidecarError {
  return isSidecarError(error) && (error.reason === 'invalid_client' || error.reason === 'tls_failure')
}

/**
 * Drops a refused certificate: its holder mints or loads another on next use, and the mTLS
 * connections made with it are closed (a pooled connection would keep presenting it). A holder that
 * has already moved on to another certificate ignores the call.
 */
export function dropBinding(
  binding: BindingCertificate,
  holder: { invalidate(binding: BindingCertificate): void },
  agents: { evictBinding(x5tS256: string): void },
): void {
  holder.invalidate(binding)
  agents.evictBinding(binding.x5tS256)
}

/**
 * "Binding rejected → re-mint once": runs `attempt` with what `load` gives (its `binding`, and
 * whatever else the caller loaded with it); when upstream rejects that binding, `rejected` drops it
 * (and says so in the log) and `attempt` runs once more with a fresh `load`. Once only: a fresh
 * certificate refused again is an answer, not a loop.
 */
export async function retryOnceWithFreshBinding<
  Loaded extends { binding: BindingCertificate | undefined },
  Result,
>(steps: {
  load(): Promise<Loaded>
  attempt(loaded: Loaded): Promise<Result>
  rejected(binding: BindingCertificate, error: SidecarError): void
}): Promise<Result> {
  for (let attempt = 0; ; attempt++) {
    const loaded = await steps.load()
    try {
      return await steps.attempt(loaded)
    } catch (error) {
      const binding = loaded.binding
      if (attempt === 0 && binding && isBindingRejected(error)) {
        steps.rejected(binding, error)
        continue
      }
      throw error
    }
  }
}
