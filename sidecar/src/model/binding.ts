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
