import { createPrivateKey, X509Certificate } from 'node:crypto'
import type forge from 'node-forge'
import { nodeForge } from './forge.ts'
import { derToPem } from './x509.ts'

/** What a PKCS#12 (.pfx/.p12) file holds, as PEM: node:crypto can load a PFX into a TLS context but cannot export it. */
export interface Pkcs12Contents {
  /** Every certificate in the file, in file order. */
  certificatesPem: string[]
  /** PKCS#8 PEM of the (first) private key. Never logged. */
  privateKeyPem: string
}

/** Why a PKCS#12 file could not be read; the message never holds the password or key material. */
export class Pkcs12Error extends Error {
  override readonly name = 'Pkcs12Error'
  readonly kind: 'wrong_password' | 'malformed' | 'no_key' | 'no_certificate'

  constructor(kind: Pkcs12Error['kind'], message: string) {
    super(message)
    this.kind = kind
  }
}

const certBag = '1.2.840.113549.1.12.10.1.3'
const keyBag = '1.2.840.113549.1.12.10.1.1'
const shroudedKeyBag = '1.2.840.113549.1.12.10.1.2'

/** True when `bytes` is plausibly a DER PKCS#12 PFX (an ASN.1 SEQUENCE), the way files are told apart by content. */
export function looksLikePkcs12(bytes: Buffer): boolean {
  return (
    bytes.length > 4 && bytes[0] === 0x30 && !bytes.subarray(0, 64).toString('latin1').includes('-----BEGIN')
  )
}

/**
 * Reads a DER PKCS#12 file with node-forge. Non-strict DER (Windows exports are sometimes BER).
 * Keys forge cannot model (EC) come back as ASN.1 and are converted by node:crypto, so every key
 * type OpenSSL knows works. A missing password is tried as the empty password and as "no password"
 * (.NET and OpenSSL disagree on how to spell it in the MAC).
 */
export function readPkcs12(der: Buffer, password: string | undefined): Pkcs12Contents {
  let asn1: forge.asn1.Asn1
  try {
    asn1 = nodeForge().asn1.fromDer(nodeForge().util.createBuffer(der.toString('binary')), false)
  } catch {
    throw new Pkcs12Error('malformed', 'not a DER PKCS#12 file')
  }
  const passwords: (string | undefined)[] = password ? [password] : ['', undefined]
  let pfx: forge.pkcs12.Pkcs12Pfx | undefined
  let failure: unknown
  for (const candidate of passwords) {
    try {
      pfx = nodeForge().pkcs12.pkcs12FromAsn1(asn1, false, candidate as string)
      break
    } catch (error) {
      failure = error
    }
  }
  if (!pfx) {
    const message = failure instanceof Error ? failure.message : ''
    if (/password|MAC|decrypt/i.test(message)) {
      throw new Pkcs12Error(
        'wrong_password',
        password
          ? 'the PKCS#12 password is wrong (or the file is corrupt)'
          : 'the PKCS#12 file is password-protected: set certificatePassword',
      )
    }
    throw new Pkcs12Error('malformed', 'not a readable PKCS#12 file (unsupported structure or algorithm)')
  }

  const certificatesPem: string[] = []
  let privateKeyPem: string | undefined
  for (const bag of pfx.safeContents.flatMap((contents) => contents.safeBags)) {
    if (bag.type === certBag) {
      if (bag.cert) certificatesPem.push(nodeForge().pki.certificateToPem(bag.cert))
      else if (bag.asn1) certificatesPem.push(derToPem(toDer(bag.asn1)))
    } else if ((bag.type === keyBag || bag.type === shroudedKeyBag) && privateKeyPem === undefined) {
      privateKeyPem = keyToPkcs8(bag)
    }
  }
  if (privateKeyPem === undefined) throw new Pkcs12Error('no_key', 'the PKCS#12 file holds no private key')
  if (certificatesPem.length === 0)
    throw new Pkcs12Error('no_certificate', 'the PKCS#12 file holds no certificate')
  // Normalise through node:crypto, which also proves each certificate is one OpenSSL accepts.
  return {
    certificatesPem: certificatesPem.map((pem) => derToPem(new X509Certificate(pem).raw)),
    privateKeyPem,
  }
}

export interface WritePkcs12Options {
  /** Leaf first. */
  certificatesPem: string[]
  /** RSA key (PKCS#8 or PKCS#1 PEM). */
  privateKeyPem: string
  password: string
  /** Default 'aes256' (what OpenSSL 3 writes); '3des' is the legacy Windows format. */
  algorithm?: 'aes256' | '3des'
}

/** Writes a DER PKCS#12 file (tests, the demo): RSA keys only, as node-forge can. */
export function writePkcs12(options: WritePkcs12Options): Buffer {
  const key = nodeForge().pki.privateKeyFromPem(
    createPrivateKey(options.privateKeyPem).export({ type: 'pkcs1', format: 'pem' }).toString(),
  )
  const certs = options.certificatesPem.map((pem) => nodeForge().pki.certificateFromPem(pem))
  const asn1 = nodeForge().pkcs12.toPkcs12Asn1(key, certs, options.password, {
    algorithm: options.algorithm ?? 'aes256',
    generateLocalKeyId: true,
  })
  return Buffer.from(nodeForge().asn1.toDer(asn1).getBytes(), 'binary')
}

function keyToPkcs8(bag: forge.pkcs12.Bag): string {
  let der: Buffer
  if (bag.key) {
    der = toDer(nodeForge().pki.wrapRsaPrivateKey(nodeForge().pki.privateKeyToAsn1(bag.key)))
  } else if (bag.asn1) {
    der = toDer(bag.asn1)
  } else {
    throw new Pkcs12Error('no_key', 'the PKCS#12 key bag is empty')
  }
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })
      .export({ type: 'pkcs8', format: 'pem' })
      .toString()
  } catch {
    throw new Pkcs12Error('malformed', 'the PKCS#12 private key is not a readable PKCS#8 key')
  }
}

function toDer(asn1: forge.asn1.Asn1): Buffer {
  return Buffer.from(nodeForge().asn1.toDer(asn1).getBytes(), 'binary')
}
