import { SidecarClientError } from './errors.ts'
import type { BindingCertificateJson, TokenResponseJson } from './wire.ts'

/**
 * The certificate an mtls_pop token is bound to; present it in the TLS handshake to the resource.
 *
 * @example
 * ```ts
 * const { bindingCertificate } = await sidecar.getToken('api://my-api/.default')
 * if (bindingCertificate?.privateKey) new Agent({ connect: { cert: bindingCertificate.certificate, key: bindingCertificate.privateKey } })
 * ```
 */
export interface SidecarBindingCertificate {
  /** base64url SHA-256 of the certificate's DER: the token's `cnf` claim. */
  x5tS256: string
  /** PEM. */
  certificate: string
  /** PEM (PKCS#8); absent when the sidecar runs with `callers.exposePrivateKey: false`. */
  privateKey?: string
  /** Certificate expiry, epoch ms. */
  notAfter: number
}

/**
 * A token from the sidecar: the `@azure/core-auth` AccessToken shape (ms timestamps) plus the
 * binding certificate of an mtls_pop token.
 *
 * @example
 * ```ts
 * const t: SidecarToken = await sidecar.getToken('https://graph.microsoft.com/.default')
 * const authorization = `${t.tokenType} ${t.token}`
 * ```
 */
export interface SidecarToken {
  token: string
  tokenType: 'Bearer' | 'mtls_pop'
  /** Epoch ms. */
  expiresOnTimestamp: number
  /** Epoch ms: when the sidecar refreshes it, and until when the SDK caches it. */
  refreshAfterTimestamp: number
  /** The identity the sidecar served (its `defaultIdentity` when none was asked for). */
  identity: string
  /** Present (and required) when `tokenType` is `mtls_pop`. */
  bindingCertificate?: SidecarBindingCertificate
}

/** Validates a GET /token body; anything unexpected is `invalid_response`, never a half token. */
export function parseTokenResponse(body: unknown): SidecarToken {
  if (!isRecord(body)) throw malformed('the body is not a JSON object')
  const { token_type, access_token, expires_on, refresh_on, identity } = body as Partial<TokenResponseJson>
  if (token_type !== 'Bearer' && token_type !== 'mtls_pop')
    throw malformed('token_type is not Bearer or mtls_pop')
  if (typeof access_token !== 'string' || access_token === '') throw malformed('access_token is missing')
  if (!isEpochSeconds(expires_on)) throw malformed('expires_on is not epoch seconds')
  if (!isEpochSeconds(refresh_on)) throw malformed('refresh_on is not epoch seconds')
  const token: SidecarToken = {
    token: access_token,
    tokenType: token_type,
    expiresOnTimestamp: expires_on * 1000,
    refreshAfterTimestamp: Math.min(refresh_on, expires_on) * 1000,
    identity: typeof identity === 'string' ? identity : '',
  }
  const binding = body['binding_certificate']
  if (binding !== undefined) token.bindingCertificate = parseBinding(binding)
  return token
}

function parseBinding(binding: unknown): SidecarBindingCertificate {
  if (!isRecord(binding)) throw malformed('binding_certificate is not an object')
  const json = binding as Partial<BindingCertificateJson>
  const x5t = json['x5t#S256']
  if (typeof x5t !== 'string' || x5t === '') throw malformed('binding_certificate.x5t#S256 is missing')
  if (typeof json.certificate !== 'string' || !json.certificate.includes('-----BEGIN CERTIFICATE-----'))
    throw malformed('binding_certificate.certificate is not a PEM certificate')
  if (!isEpochSeconds(json.not_after)) throw malformed('binding_certificate.not_after is not epoch seconds')
  const result: SidecarBindingCertificate = {
    x5tS256: x5t,
    certificate: json.certificate,
    notAfter: json.not_after * 1000,
  }
  if (json.private_key !== undefined) {
    // The key's content is never quoted: it is a secret even when malformed.
    if (typeof json.private_key !== 'string' || !json.private_key.includes('PRIVATE KEY-----'))
      throw malformed('binding_certificate.private_key is not a PEM private key')
    result.privateKey = json.private_key
  }
  return result
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isEpochSeconds(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0
}

function malformed(what: string): SidecarClientError {
  return new SidecarClientError('invalid_response', `The sidecar's /token answer is malformed: ${what}`)
}
