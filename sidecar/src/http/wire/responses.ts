import type { Context } from 'hono'
import { SidecarError } from '../../core/errors.ts'
import type { CredentialBundle } from '../../model/bundle.ts'
import type { ServedToken } from '../../identities/identity.ts'
import type { BindingCertificate } from '../../model/binding.ts'

/** `binding_certificate` as /token and /credential return it (contract §3). */
export interface BindingCertificateJson {
  'x5t#S256': string
  certificate: string
  private_key?: string
  not_after: number
  key_protection: string
}

/** GET /token's 200 body. */
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

export function bindingCertificateJson(
  binding: BindingCertificate,
  exposePrivateKey: boolean,
): BindingCertificateJson {
  const json: BindingCertificateJson = {
    'x5t#S256': binding.x5tS256,
    certificate: binding.certificatePem,
    not_after: Math.floor(binding.notAfter / 1000),
    key_protection: binding.keyProtection,
  }
  if (exposePrivateKey) json.private_key = binding.privateKeyPem
  return json
}

/** The native answer's `expires_in`: whole seconds left, never negative. */
export function expiresIn(expiresOnMs: number, nowMs: number): number {
  return Math.max(0, Math.floor((expiresOnMs - nowMs) / 1000))
}

export function tokenResponseJson(
  served: ServedToken,
  nowMs: number,
  exposePrivateKey: boolean,
): TokenResponseJson {
  const { token, scope, identity } = served
  const json: TokenResponseJson = {
    token_type: token.tokenType,
    access_token: token.accessToken,
    expires_on: Math.floor(token.expiresOn / 1000),
    expires_in: expiresIn(token.expiresOn, nowMs),
    refresh_on: Math.floor(token.refreshAt / 1000),
    resource: scope.resource,
    scope: scope.scope,
    identity: identity.name,
  }
  if (token.tokenType === 'mtls_pop') {
    // Fail closed: a PoP token is useless, and misleading, without the certificate it is bound to.
    if (!token.binding)
      throw new SidecarError('internal_error', 'mtls_pop token without its binding certificate')
    json.binding_certificate = bindingCertificateJson(token.binding, exposePrivateKey)
  }
  return json
}

export function credentialResponseJson(
  bundle: CredentialBundle,
  exposePrivateKey: boolean,
): Record<string, unknown> {
  const json: Record<string, unknown> = {
    identity: bundle.identity,
    client_id: bundle.clientId,
    tenant_id: bundle.tenantId,
    token_endpoint: bundle.tokenEndpoint,
    key_protection: bundle.keyProtection,
    binding_certificate: bindingCertificateJson(bundle.binding, exposePrivateKey),
  }
  if (bundle.assertion !== undefined) json['assertion'] = bundle.assertion
  if (bundle.assertionExpiresOn !== undefined)
    json['assertion_expires_on'] = Math.floor(bundle.assertionExpiresOn / 1000)
  return json
}

/** One value of a query parameter; a repeated parameter is ambiguous and refused. */
export function singleQuery(c: Context, name: string): string | undefined {
  const values = c.req.queries(name)
  if (values === undefined || values.length === 0) return undefined
  if (values.length > 1)
    throw new SidecarError('invalid_request', `Query parameter "${name}" is given more than once`)
  return values[0]
}
