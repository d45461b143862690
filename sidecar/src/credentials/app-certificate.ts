import { createPrivateKey } from 'node:crypto'
import { looksLikePkcs12, Pkcs12Error, readPkcs12 } from '../pki/pkcs12.ts'
import { certificateInfo, publicKeysMatch, splitPemCertificates } from '../pki/x509.ts'
import type { BindingCertificate } from '../model/binding.ts'

/** An application's certificate credential: the leaf (with key) and the chain for `x5c`. */
export interface AppCertificate {
  /** Leaf certificate and its key: what is presented over mTLS and signs client assertions. */
  binding: BindingCertificate
  /** Leaf first, then the rest of the file's certificates: the `x5c` chain (sendX5C). */
  chainPem: string
  subject: string
  notBefore: number
}

/** Why a certificate did not load. The message is safe to log: never key material or a password. */
export class CertificateLoadError extends Error {
  override readonly name = 'CertificateLoadError'
}

/**
 * Reads a certificate credential, telling the format by content, not by file name (Microsoft.Identity.Web
 * accepts a .pfx named .pem and vice versa): PEM text with certificate(s) and a private key (PKCS#8,
 * encrypted PKCS#8, PKCS#1 or SEC1), or DER PKCS#12. The leaf is the certificate whose public key
 * matches the private key, wherever it sits in the file.
 *
 * @param now epoch ms: an expired or not-yet-valid certificate does not load, so the chain can fall
 *   through to the next credential instead of sending Entra a certificate it will refuse.
 */
export function parseAppCertificate(
  bytes: Buffer,
  password: string | undefined,
  now: number,
): AppCertificate {
  let certificatesPem: string[]
  let privateKeyPem: string
  if (looksLikePkcs12(bytes)) {
    try {
      ;({ certificatesPem, privateKeyPem } = readPkcs12(bytes, password))
    } catch (error) {
      if (error instanceof Pkcs12Error) throw new CertificateLoadError(error.message)
      throw new CertificateLoadError('not a readable PKCS#12 file')
    }
  } else {
    const text = bytes.toString('utf8')
    certificatesPem = splitPemCertificates(text)
    if (certificatesPem.length === 0) {
      throw new CertificateLoadError('holds neither a PEM certificate nor a PKCS#12 file')
    }
    privateKeyPem = pemPrivateKey(text, password)
  }

  const leafIndex = certificatesPem.findIndex((pem) => matches(pem, privateKeyPem))
  const leaf = certificatesPem[leafIndex]
  if (leaf === undefined)
    throw new CertificateLoadError('its private key does not match any certificate in it')
  const info = certificateInfo(leaf)
  if (info.notAfter <= now) {
    throw new CertificateLoadError(
      `its certificate (${info.subject.replace(/\n/g, ', ')}) expired on ${new Date(info.notAfter).toISOString()}`,
    )
  }
  if (info.notBefore > now) {
    throw new CertificateLoadError(
      `its certificate is not valid before ${new Date(info.notBefore).toISOString()}`,
    )
  }
  const chain = [info.pem, ...certificatesPem.filter((_, index) => index !== leafIndex)]
  return {
    binding: {
      x5tS256: info.x5tS256,
      certificatePem: info.pem,
      privateKeyPem,
      notAfter: info.notAfter,
      keyProtection: 'software',
    },
    chainPem: chain.join(''),
    subject: info.subject,
    notBefore: info.notBefore,
  }
}

/** Decodes a `Base64Encoded` value: base64 of PKCS#12 DER, or of PEM text. */
export function decodeBase64Certificate(value: string): Buffer {
  const bytes = Buffer.from(value.replace(/\s+/g, ''), 'base64')
  if (bytes.length === 0) throw new CertificateLoadError('base64EncodedValue is empty')
  return bytes
}

const privateKeyBlock = /-----BEGIN ((?:ENCRYPTED |RSA |EC )?PRIVATE KEY)-----[\s\S]+?-----END \1-----/

function pemPrivateKey(text: string, password: string | undefined): string {
  const block = privateKeyBlock.exec(text)?.[0]
  if (!block) throw new CertificateLoadError('holds a certificate but no PEM private key')
  const encrypted = block.startsWith('-----BEGIN ENCRYPTED') || /Proc-Type:\s*4,ENCRYPTED/.test(block)
  if (encrypted && !password)
    throw new CertificateLoadError('its private key is encrypted: set certificatePassword')
  try {
    const key = createPrivateKey(
      encrypted ? { key: block, format: 'pem', passphrase: password ?? '' } : block,
    )
    return key.export({ type: 'pkcs8', format: 'pem' }).toString()
  } catch {
    throw new CertificateLoadError(
      encrypted
        ? 'its private key could not be decrypted: wrong certificatePassword?'
        : 'its private key is not readable',
    )
  }
}

function matches(certificatePem: string, privateKeyPem: string): boolean {
  try {
    return publicKeysMatch(certificatePem, privateKeyPem)
  } catch {
    return false
  }
}
