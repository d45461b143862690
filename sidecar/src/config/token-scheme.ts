import type { TokenType } from '../model/token.ts'
import type { ManagedIdentityConfig, ProtocolScheme } from './types.ts'

/** What an identity's callers are served: mtls_pop for `protocolScheme: MTLS_POP`, else Bearer. */
export function servedTokenType(config: { protocolScheme: ProtocolScheme }): TokenType {
  return config.protocolScheme === 'MTLS_POP' ? 'mtls_pop' : 'Bearer'
}

/**
 * Whether a credential is used bound — its certificate presented over mTLS (an app certificate, a
 * FIC leg 1 from IMDS v2, a managed identity's IMDS v2 certificate): when asked for
 * (`useBoundCredential: true`), and always for an identity that serves mtls_pop, whose tokens bind
 * to the certificate of the TLS handshake. The one place this is decided.
 */
export function isBoundCredential(served: TokenType, credential: { useBoundCredential: boolean }): boolean {
  return served === 'mtls_pop' || credential.useBoundCredential
}

/** A managed identity used bound (MTLS_POP, or a bound Bearer token) needs the IMDS v2 certificate. */
export function usesImdsV2(config: ManagedIdentityConfig): boolean {
  return isBoundCredential(servedTokenType(config), config)
}
