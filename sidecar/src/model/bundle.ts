import type { BindingCertificate, KeyProtection } from './binding.ts'

/** What GET /credential returns (contract §3), before wire formatting. */
export interface CredentialBundle {
  identity: string
  clientId: string
  tenantId: string
  tokenEndpoint: string
  keyProtection: KeyProtection
  binding: BindingCertificate
  /** FIC leg-1 token, the signed assertion for leg 2. */
  assertion?: string
  /** Epoch milliseconds. */
  assertionExpiresOn?: number
}
