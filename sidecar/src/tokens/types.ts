/** The wire token types, as Entra and IMDS spell them. */
export type TokenType = 'Bearer' | 'mtls_pop'

/** How the binding key is held. Only software keys exist today; a TPM/HSM provider would add more. */
export type KeyProtection = 'software'

/** A certificate (with its private key) that tokens are bound to or that authenticates over mTLS. */
export interface BindingCertificate {
  /** base64url(SHA-256(DER)): the value of the token's `cnf` claim. */
  x5tS256: string
  certificatePem: string
  /** PKCS#8 PEM. Never logged. */
  privateKeyPem: string
  /** Epoch milliseconds. */
  notAfter: number
  keyProtection: KeyProtection
}

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
