import type { ManagedIdentitySelector } from '../../config/types.ts'
import type { Clock } from '../../core/clock.ts'
import { SidecarError } from '../../core/errors.ts'
import type { BindingCertificate } from '../../model/binding.ts'
import { buildCsr } from '../../pki/csr.ts'
import type { BindingKey, KeyPool } from '../../pki/key-provider.ts'
import { certificateInfo, publicKeysMatch, type CertificateInfo } from '../../pki/x509.ts'
import type { ImdsV2Client } from '../../upstream/imds/v2.ts'

/** A managed identity's IMDS v2 binding certificate and where to use it. */
export interface ImdsV2Binding {
  binding: BindingCertificate
  /** The certificate response's client id (the real GUID): what the token leg sends. */
  clientId: string
  tenantId: string
  /** `{mtls_authentication_endpoint}/{tenant}/oauth2/v2.0/token`. */
  tokenEndpoint: string
  /** "SystemAssigned" or "UserAssigned", as IMDS says. */
  identityType: string
}

export interface MintBindingOptions {
  client: ImdsV2Client
  pool: KeyPool
  selector: ManagedIdentitySelector
  clock: Clock
}

/**
 * Mints a binding certificate: getplatformmetadata, a CSR for a fresh key, issuecredential; refuses
 * a certificate for another key, client or tenant, or one that has already expired.
 */
export async function mintBinding(options: MintBindingOptions, signal: AbortSignal): Promise<ImdsV2Binding> {
  const { client, pool, selector } = options
  // Metadata and the key in parallel: without a pre-generated key, keygen hides behind the round trip.
  const [metadataResult, keyResult] = await Promise.allSettled([
    client.getPlatformMetadata(selector, signal),
    pool.take(),
  ])
  if (metadataResult.status === 'rejected') {
    // The key never reached IMDS: keep it for the next attempt instead of burning another keygen.
    if (keyResult.status === 'fulfilled') pool.giveBack(keyResult.value)
    throw metadataResult.reason
  }
  if (keyResult.status === 'rejected') throw keyResult.reason
  const metadata = metadataResult.value
  const key = keyResult.value

  const csr = await buildCsr({
    clientId: metadata.clientId,
    tenantId: metadata.tenantId,
    cuIdJson: metadata.cuIdJson,
    publicKeyPem: key.publicKeyPem,
    signPss: (data) => key.signPss(data),
  })
  const issued = await client.issueCredential(selector, csr, signal)

  if (!publicKeysMatch(issued.certificateDer, key.publicKeyPem)) {
    throw mismatch('IMDS issued a certificate for a public key that is not the one in the CSR')
  }
  if (!sameId(issued.clientId, metadata.clientId) || !sameId(issued.tenantId, metadata.tenantId)) {
    throw mismatch(
      `IMDS issued a certificate for client ${issued.clientId} in tenant ${issued.tenantId}, ` +
        `but the platform metadata named client ${metadata.clientId} in tenant ${metadata.tenantId}`,
    )
  }
  const info = certificateInfo(issued.certificateDer)
  const now = options.clock.now()
  // Used only between notBefore and notAfter (contract §3): never served or presented outside it.
  if (info.notAfter <= now) throw mismatch('IMDS issued a certificate that has already expired')
  if (info.notBefore > now) {
    throw mismatch(
      `IMDS issued a certificate that is not valid before ${new Date(info.notBefore).toISOString()}`,
    )
  }

  return toBinding(info, key, issued)
}

export function toBinding(
  info: CertificateInfo,
  key: BindingKey,
  issued: { clientId: string; tenantId: string; tokenEndpoint: string; identityType: string },
): ImdsV2Binding {
  return {
    binding: {
      x5tS256: info.x5tS256,
      certificatePem: info.pem,
      privateKeyPem: key.privateKeyPem,
      notAfter: info.notAfter,
      keyProtection: key.protection,
    },
    clientId: issued.clientId,
    tenantId: issued.tenantId,
    tokenEndpoint: issued.tokenEndpoint,
    identityType: issued.identityType,
  }
}

function mismatch(message: string): SidecarError {
  return new SidecarError('upstream_error', message, {
    reason: 'malformed_response',
    upstream: { endpoint: 'imds.issuecredential' },
  })
}

function sameId(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase()
}
