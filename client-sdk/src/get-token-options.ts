import type { AbortSignalLike } from './abort.ts'

/**
 * Options of {@link SidecarClient.getToken}.
 *
 * @example
 * ```ts
 * await sidecar.getToken('https://vault.azure.net/.default', { identity: 'app', forceRefresh: true })
 * ```
 */
export interface GetTokenOptions {
  /** Identity to ask for; default the client's `identity`, else the sidecar's `defaultIdentity`. */
  identity?: string
  /** Skip the SDK's cache and ask the sidecar again (the sidecar still serves from its own cache). */
  forceRefresh?: boolean
  /** Stops waiting for the answer (a request shared with other callers is not cancelled). */
  abortSignal?: AbortSignalLike
  /**
   * Stops waiting after this many milliseconds with a `timeout` error (a request shared with other
   * callers is not cancelled; the client's `timeoutMs` bounds it). Default: only `timeoutMs`.
   */
  timeoutMs?: number
  /**
   * A claims challenge from a resource that refused the token (continuous access evaluation: the
   * `claims` of its `WWW-Authenticate`, JSON or base64). Skips the SDK's cache; the sidecar asks
   * upstream again with it (merged with the identity's `clientCapabilities`) and replaces its own
   * cached token.
   */
  claims?: string
}
