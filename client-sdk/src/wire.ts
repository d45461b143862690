// The daemon wire types the SDK reads (contract §3), copied rather than imported: the SDK ships
// without the daemon, and the wire format is the contract between them. test/client-sdk/
// wire-types.test.ts fails to type-check when these and the daemon's own types drift apart.

/** `binding_certificate` in a GET /token answer. */
export interface BindingCertificateJson {
  'x5t#S256': string
  certificate: string
  /** Omitted when the daemon runs with `callers.exposePrivateKey: false`. */
  private_key?: string
  not_after: number
  /** `software` today: the daemon's binding keys come from node:crypto. */
  key_protection: string
}

/** GET /token's 200 body. Times are epoch seconds. */
export interface TokenResponseJson {
  token_type: 'Bearer' | 'mtls_pop'
  access_token: string
  expires_on: number
  expires_in: number
  refresh_on: number
  resource: string
  scope: string
  identity: string
  binding_certificate?: BindingCertificateJson
}

/** The OAuth-shaped error body every daemon route answers with. */
export interface ErrorBodyJson {
  error: string
  error_description?: string
  correlation_id?: string
  error_codes?: number[]
  trace_id?: string
  /** The upstream HTTP status, when an upstream answer caused the error. */
  upstream_status?: number
}
