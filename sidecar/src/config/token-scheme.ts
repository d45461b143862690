import type { TokenType } from '../model/token.ts'
import type { ManagedIdentityConfig, ProtocolScheme } from './types.ts'

/** What an identity's callers are served: mtls_pop for `protocolScheme: MTLS_POP`, else Bearer. */
export function servedTokenType(config: { protocolScheme: ProtocolScheme }): TokenType {
  return config.protocolScheme === 'MTLS_POP' ? 'mtls_pop' : 'Bearer'
}

/** MTLS_POP, or a Bearer token over the bound credential, needs the IMDS v2 certificate. */
export function usesImdsV2(config: ManagedIdentityConfig): boolean {
  return config.protocolScheme === 'MTLS_POP' || config.useBoundCredential
}
