import { constants, createPrivateKey, privateEncrypt, randomBytes, type KeyObject } from 'node:crypto'
import forge from 'node-forge'
import { generateRsaKeyPair, type RsaKeyPair } from '../../pki/keys.ts'
import { x5tS256 } from '../../pki/x509.ts'

/** One relative distinguished name attribute, e.g. `{ shortName: 'CN', value: 'x' }`. */
export interface NameAttribute {
  shortName: 'CN' | 'DC' | 'O' | 'OU' | 'C'
  value: string
}

export interface IssueOptions {
  /** SPKI (or PKCS#1) PEM of the subject's key. */
  publicKeyPem: string
  subject: NameAttribute[]
  /** Validity from `notBefore` (default: now - 1 minute). */
  validityMs: number
  notBefore?: number
  /** DNS names / IP addresses for a server certificate. */
  serverNames?: string[]
  usage: 'server' | 'client'
}

/**
 * A certificate authority for the emulator and tests: a self-signed RSA root that issues server
 * certificates (for the emulated Entra and the demo resource) and client certificates (IMDS v2
 * binding certificates, app certificates). node-forge builds the X.509 structure; keys come from
 * node:crypto, which also signs (forge's RSA in JavaScript took ~20 ms a certificate).
 */
export class CertificateAuthority {
  readonly certificatePem: string
  readonly #key: forge.pki.rsa.PrivateKey
  readonly #cert: forge.pki.Certificate

  private constructor(certificatePem: string, keyPem: string) {
    this.certificatePem = certificatePem
    this.#key = nativeSigner(keyPem)
    this.#cert = forge.pki.certificateFromPem(certificatePem)
  }

  /** A new CA; its key is `keys` when given (the emulator's key source), else a fresh one. */
  static async create(
    options: { commonName?: string; now?: number; keys?: RsaKeyPair } = {},
  ): Promise<CertificateAuthority> {
    const keys = options.keys ?? (await generateRsaKeyPair(2048))
    const now = options.now ?? Date.now()
    const cert = forge.pki.createCertificate()
    const name = [{ shortName: 'CN', value: options.commonName ?? 'credential-sidecar test CA' }]
    cert.publicKey = forge.pki.publicKeyFromPem(keys.publicKeyPem)
    cert.serialNumber = serialNumber()
    cert.validity.notBefore = new Date(now - 60_000)
    cert.validity.notAfter = new Date(now + 10 * 365 * 24 * 3600_000)
    cert.setSubject(name)
    cert.setIssuer(name)
    cert.setExtensions([
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      { name: 'subjectKeyIdentifier' },
    ])
    cert.sign(nativeSigner(keys.privateKeyPem), forge.md.sha256.create())
    return new CertificateAuthority(forge.pki.certificateToPem(cert), keys.privateKeyPem)
  }

  /** Issues a certificate for an existing public key; returns PEM. */
  issue(options: IssueOptions): string {
    const cert = forge.pki.createCertificate()
    const notBefore = options.notBefore ?? Date.now() - 60_000
    cert.publicKey = forge.pki.publicKeyFromPem(options.publicKeyPem)
    cert.serialNumber = serialNumber()
    cert.validity.notBefore = new Date(notBefore)
    cert.validity.notAfter = new Date(notBefore + options.validityMs)
    cert.setSubject(options.subject.map(forgeNameAttribute))
    cert.setIssuer(this.#cert.subject.attributes)
    const extensions: object[] = [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: options.usage === 'server', clientAuth: options.usage === 'client' },
      { name: 'authorityKeyIdentifier', keyIdentifier: this.#cert.generateSubjectKeyIdentifier().getBytes() },
    ]
    if (options.serverNames?.length) {
      extensions.push({
        name: 'subjectAltName',
        altNames: options.serverNames.map((n) =>
          /^[\d.]+$|:/.test(n) ? { type: 7, ip: n } : { type: 2, value: n },
        ),
      })
    }
    cert.setExtensions(extensions)
    cert.sign(this.#key, forge.md.sha256.create())
    return forge.pki.certificateToPem(cert)
  }

  /** Generates a fresh RSA-2048 key and issues a certificate for it. */
  async issueWithNewKey(
    options: Omit<IssueOptions, 'publicKeyPem'>,
  ): Promise<RsaKeyPair & { certificatePem: string; x5tS256: string }> {
    const keys = await generateRsaKeyPair(2048)
    const certificatePem = this.issue({ ...options, publicKeyPem: keys.publicKeyPem })
    return { ...keys, certificatePem, x5tS256: x5tS256(certificatePem) }
  }
}

/** DER DigestInfo header of a SHA-256 digest (RFC 8017 §9.2, note 1). */
const sha256DigestInfo = Buffer.from('3031300d060960864801650304020105000420', 'hex')

/**
 * What forge's `certificate.sign` needs of a key (`sign(md)`: the RSASSA-PKCS1-v1_5 signature of
 * the digest, as a binary string), done by node:crypto: the DigestInfo padded and encrypted with
 * the private key is that signature.
 */
function nativeSigner(privateKeyPem: string): forge.pki.rsa.PrivateKey {
  const key: KeyObject = createPrivateKey(privateKeyPem)
  const sign = (md: forge.md.MessageDigest): string => {
    if (md.algorithm !== 'sha256')
      throw new Error(`the emulator CA signs with SHA-256 only, not ${md.algorithm}`)
    const digest = Buffer.from(md.digest().getBytes(), 'binary')
    const signature = privateEncrypt(
      { key, padding: constants.RSA_PKCS1_PADDING },
      Buffer.concat([sha256DigestInfo, digest]),
    )
    return signature.toString('binary')
  }
  return { sign } as unknown as forge.pki.rsa.PrivateKey
}

/**
 * node-forge has no OID for DC (domainComponent), so it is given by OID, as an IA5String
 * (RFC 4519): IMDS v2 binding certificates carry `DC={tenantId}`.
 */
function forgeNameAttribute(a: NameAttribute): object {
  if (a.shortName === 'DC') {
    return { type: '0.9.2342.19200300.100.1.25', valueTagClass: forge.asn1.Type.IA5STRING, value: a.value }
  }
  return { shortName: a.shortName, value: a.value }
}

function serialNumber(): string {
  // Positive, 16 bytes: clear the top bit so DER does not read it as negative.
  const bytes = randomBytes(16)
  bytes[0] = (bytes[0] ?? 0) & 0x7f
  return bytes.toString('hex')
}
