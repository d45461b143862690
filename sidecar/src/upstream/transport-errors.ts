/** What went wrong below HTTP: no answer in time, a refused TLS handshake, or no connection at all. */
export type TransportFailure = 'timeout' | 'tls_failure' | 'connect_failure'

export interface ClassifiedTransportError {
  reason: TransportFailure
  /** The error's `code` (e.g. `ECONNREFUSED`, `UND_ERR_CONNECT_TIMEOUT`), '' when it has none or a numeric one. */
  code: string
  /** Short words for a message: "timed out", "TLS handshake failed", "connection failed". */
  what: string
}

const timeoutCodes = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT'])

/**
 * Classifies an error thrown by an undici request. `deadlinePassed`: the caller's own timer fired
 * (the abort then hides the real cause). Used for IMDS, Entra and the downstream proxy alike.
 * Undefined for a programming error (a TypeError, RangeError, ReferenceError or SyntaxError that is
 * no TLS failure, or undici's UND_ERR_INVALID_ARG): not the network's fault, so the caller rethrows
 * it rather than hiding a bug behind "connection failed" (and retrying it).
 */
export function classifyTransportError(
  error: unknown,
  deadlinePassed: boolean,
): ClassifiedTransportError | undefined {
  // Only Node's and undici's string codes (ECONNREFUSED, UND_ERR_…): a DOMException's `code` is a
  // legacy number (23 for TimeoutError) that means nothing in a message.
  const rawCode = (error as { code?: unknown } | undefined)?.code
  const code = typeof rawCode === 'string' && /^[A-Z][A-Z0-9_]*$/.test(rawCode) ? rawCode : ''
  const tls = isTlsFailure(error)
  if (!deadlinePassed && !tls && isProgrammingError(error, code)) return undefined
  const reason: TransportFailure =
    deadlinePassed || timeoutCodes.has(code) ? 'timeout' : tls ? 'tls_failure' : 'connect_failure'
  const what =
    reason === 'timeout'
      ? 'timed out'
      : reason === 'tls_failure'
        ? 'TLS handshake failed'
        : 'connection failed'
  return { reason, code, what }
}

function isProgrammingError(error: unknown, code: string): boolean {
  return (
    code === 'UND_ERR_INVALID_ARG' ||
    error instanceof TypeError ||
    error instanceof RangeError ||
    error instanceof ReferenceError ||
    error instanceof SyntaxError
  )
}

function isTlsFailure(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 5; depth++) {
    const code = String((e as { code?: unknown }).code ?? '')
    const message = String((e as { message?: unknown }).message ?? '')
    // A server that refuses our client certificate may just drop the connection mid-handshake
    // (Node servers do): Node reports ECONNRESET "… before secure TLS connection was established".
    // Certificate verification failures carry OpenSSL's codes (UNABLE_TO_…, SELF_SIGNED_…).
    if (
      /^ERR_SSL|^ERR_TLS|CERT|SSL|UNABLE_TO_|SELF_SIGNED/.test(code) ||
      /alert|certificate|handshake|SSL|before secure TLS/i.test(message)
    ) {
      return true
    }
    e = (e as { cause?: unknown }).cause
  }
  return false
}
