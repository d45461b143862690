import { createHash, createPublicKey, X509Certificate } from 'node:crypto'

/** base64url(SHA-256(DER)): the `x5t#S256` thumbprint used in `cnf` claims and JWT headers. */
export function x5tS256(certificate: string | Buffer): string {
  const der = typeof certificate === 'string' ? new X509Certificate(certificate).raw : certificate
  return createHash('sha256').update(der).digest('base64url')
}

export interface CertificateInfo {
  der: Buffer
  pem: string
  x5tS256: string
  subject: string
  issuer: string
  /** Epoch milliseconds. */
  notBefore: number
  notAfter: number
  /** SPKI PEM. */
  publicKeyPem: string
}

/** Reads a PEM or DER certificate with node:crypto. Throws on anything that is not one. */
export function certificateInfo(certificate: string | Buffer): CertificateInfo {
  const x509 = new X509Certificate(certificate)
  return {
    der: x509.raw,
    pem: derToPem(x509.raw),
    x5tS256: x5tS256(x509.raw),
    subject: x509.subject,
    issuer: x509.issuer,
    notBefore: Date.parse(x509.validFrom),
    notAfter: Date.parse(x509.validTo),
    publicKeyPem: x509.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  }
}

export function derToPem(der: Buffer, label = 'CERTIFICATE'): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? []
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`
}

/** True when the certificate's public key is the public half of `privateKeyPem` / equals `publicKeyPem`. */
export function publicKeysMatch(certificate: string | Buffer, keyPem: string): boolean {
  const certKey = new X509Certificate(certificate).publicKey.export({ type: 'spki', format: 'der' })
  const otherKey = createPublicKey(keyPem).export({ type: 'spki', format: 'der' })
  return Buffer.compare(certKey, otherKey) === 0
}

/** Splits a PEM bundle into its certificate blocks (leaf first, as files usually hold them). */
export function splitPemCertificates(pem: string): string[] {
  return (
    pem
      .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)
      ?.map((block) => `${block}\n`) ?? []
  )
}
