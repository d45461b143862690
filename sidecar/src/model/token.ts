import type { BindingCertificate } from './binding.ts'

/** The wire token types, as Entra and IMDS spell them. */
export type TokenType = 'Bearer' | 'mtls_pop'

/** A token as an upstream returned it, normalised. */
export interface AcquiredToken {
  tokenType: TokenType
  accessToken: string
  /** Epoch milliseconds. */
  expiresOn: number
  /** Epoch milliseconds: upstream's refresh hint (`refresh_in`), when it gave one. */
  refreshOn?: number
  /** Set when the token is bound (mtls_pop) or was obtained over mTLS with this certificate. */
  binding?: BindingCertificate
}
