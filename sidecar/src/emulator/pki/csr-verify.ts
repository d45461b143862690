import { constants, createPublicKey, verify, type KeyObject } from 'node:crypto'
import forge from 'node-forge'
import {
  COMMON_NAME_OID,
  CUID_ATTRIBUTE_OID,
  DOMAIN_COMPONENT_OID,
  MGF1_OID,
  PSS_SALT_LENGTH,
  RSASSA_PSS_OID,
  SHA256_OID,
} from '../../pki/csr.ts'

/**
 * Parses and verifies an IMDS v2 CSR the way the emulated IMDS does before it issues a binding
 * certificate. Checks, in order: DER structure, signature algorithm and RSASSA-PSS parameters,
 * public key (RSA, ≥ 2048 bits), the PSS signature against the CSR's own key, the subject
 * (CN = client id, DC = tenant id) and the cuId attribute.
 */

/** Which check failed. */
export type CsrCheck =
  | 'encoding'
  | 'structure'
  | 'signature_algorithm'
  | 'pss_parameters'
  | 'public_key'
  | 'key_size'
  | 'signature'
  | 'subject'
  | 'cuid_attribute'

export interface CsrExpectations {
  clientId: string
  tenantId: string
  /** The cuId JSON text the CSR's attribute must hold, byte for byte. */
  cuIdJson: string
}

export interface ParsedCsr {
  /** SPKI PEM of the key the CSR asks a certificate for. */
  publicKeyPem: string
  modulusBits: number
  /** Subject attributes in DER order. */
  subject: { oid: string; value: string }[]
  /** The cuId attribute text, when present. */
  cuIdJson: string | undefined
}

export type CsrVerification = { ok: true; csr: ParsedCsr } | { ok: false; check: CsrCheck; message: string }

export class CsrVerificationError extends Error {
  override readonly name = 'CsrVerificationError'
  readonly check: CsrCheck
  constructor(check: CsrCheck, message: string) {
    super(message)
    this.check = check
  }
}

/** Verifies `csr` (base64 DER as IMDS receives it, or the DER bytes). Never throws. */
export function verifyCsr(csr: string | Buffer, expected: CsrExpectations): CsrVerification {
  try {
    const parsed = verifyOrThrow(csr, expected)
    return { ok: true, csr: parsed }
  } catch (error) {
    if (error instanceof CsrVerificationError)
      return { ok: false, check: error.check, message: error.message }
    return { ok: false, check: 'structure', message: `CSR could not be parsed: ${(error as Error).message}` }
  }
}

const asn1 = forge.asn1
const MIN_MODULUS_BITS = 2048

function fail(check: CsrCheck, message: string): never {
  throw new CsrVerificationError(check, message)
}

function verifyOrThrow(csr: string | Buffer, expected: CsrExpectations): ParsedCsr {
  const der = typeof csr === 'string' ? decodeBase64(csr) : csr
  const infoDer = firstElementOfSequence(der)
  let root: forge.asn1.Asn1
  try {
    root = asn1.fromDer(forge.util.createBuffer(der.toString('binary')), {
      strict: true,
      parseAllBytes: true,
      decodeBitStrings: false,
    } as unknown as boolean)
  } catch (error) {
    fail('structure', `CSR is not valid DER: ${(error as Error).message}`)
  }
  const [info, sigAlg, sigBits] = children(root, asn1.Type.SEQUENCE, 'CertificationRequest')
  if (!info || !sigAlg || !sigBits || children(root).length !== 3) {
    fail('structure', 'CertificationRequest must hold info, signatureAlgorithm and signature')
  }

  checkPssAlgorithm(sigAlg)

  const [version, subject, spki, attributes] = children(info, asn1.Type.SEQUENCE, 'CertificationRequestInfo')
  if (!version || !subject || !spki || !attributes)
    fail('structure', 'CertificationRequestInfo is incomplete')
  if (!isUniversal(version, asn1.Type.INTEGER) || bytesOf(version) !== '\x00') {
    fail('structure', 'CSR version must be v1 (0)')
  }

  const { key, modulusBits, publicKeyPem } = publicKey(spki)

  if (!isUniversal(sigBits, asn1.Type.BITSTRING)) fail('structure', 'signature is not a BIT STRING')
  const sigBytes = Buffer.from(bytesOf(sigBits), 'binary')
  if (sigBytes[0] !== 0) fail('signature', 'signature BIT STRING has unused bits')
  const ok = verify(
    'sha256',
    infoDer,
    { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: PSS_SALT_LENGTH },
    sigBytes.subarray(1),
  )
  if (!ok) fail('signature', 'RSASSA-PSS signature does not verify against the CSR public key')

  const names = subjectAttributes(subject)
  checkSubject(names, expected)

  const cuId = cuIdAttribute(attributes)
  if (cuId === undefined) fail('cuid_attribute', `cuId attribute ${CUID_ATTRIBUTE_OID} is missing`)
  if (cuId !== expected.cuIdJson) {
    fail(
      'cuid_attribute',
      `cuId attribute ${JSON.stringify(cuId)} is not this VM's ${JSON.stringify(expected.cuIdJson)}`,
    )
  }

  return { publicKeyPem, modulusBits, subject: names, cuIdJson: cuId }
}

function decodeBase64(text: string): Buffer {
  // IMDS takes plain base64: no PEM armour, no line breaks.
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length % 4 !== 0) {
    fail('encoding', 'CSR must be plain base64 of the DER (no PEM armour, no line breaks)')
  }
  return Buffer.from(text, 'base64')
}

/**
 * The exact bytes of CertificationRequestInfo, as signed. Sliced from the input rather than
 * re-encoded, so a non-canonical encoding fails the signature instead of being silently fixed.
 */
function firstElementOfSequence(der: Buffer): Buffer {
  const outer = readHeader(der, 0)
  if (der[0] !== 0x30 || outer.end !== der.length) fail('structure', 'CSR is not a single DER SEQUENCE')
  const inner = readHeader(der, outer.contentStart)
  if (der[outer.contentStart] !== 0x30) fail('structure', 'CertificationRequestInfo is not a SEQUENCE')
  return der.subarray(outer.contentStart, inner.end)
}

function readHeader(der: Buffer, offset: number): { contentStart: number; end: number } {
  const first = der[offset + 1]
  if (first === undefined) fail('structure', 'truncated DER')
  let length = first
  let contentStart = offset + 2
  if (first & 0x80) {
    const count = first & 0x7f
    if (count === 0 || count > 4) fail('structure', 'unsupported DER length')
    length = 0
    for (let i = 0; i < count; i++) {
      const byte = der[contentStart + i]
      if (byte === undefined) fail('structure', 'truncated DER')
      length = length * 256 + byte
    }
    contentStart += count
  }
  const end = contentStart + length
  if (end > der.length) fail('structure', 'truncated DER')
  return { contentStart, end }
}

function children(node: forge.asn1.Asn1, type?: forge.asn1.Type, what?: string): forge.asn1.Asn1[] {
  if (type !== undefined && !isUniversal(node, type))
    fail('structure', `${what ?? 'element'} is not the expected type`)
  return Array.isArray(node.value) ? node.value : []
}

function isUniversal(node: forge.asn1.Asn1, type: forge.asn1.Type): boolean {
  return node.tagClass === asn1.Class.UNIVERSAL && node.type === type
}

function isContext(node: forge.asn1.Asn1, tag: number): boolean {
  return node.tagClass === asn1.Class.CONTEXT_SPECIFIC && node.type === tag && node.constructed
}

function bytesOf(node: forge.asn1.Asn1): string {
  return typeof node.value === 'string' ? node.value : ''
}

function oidOf(node: forge.asn1.Asn1 | undefined): string | undefined {
  if (!node || !isUniversal(node, asn1.Type.OID)) return undefined
  return asn1.derToOid(forge.util.createBuffer(bytesOf(node)))
}

function integerOf(node: forge.asn1.Asn1 | undefined): number | undefined {
  if (!node || !isUniversal(node, asn1.Type.INTEGER)) return undefined
  return asn1.derToInteger(forge.util.createBuffer(bytesOf(node)))
}

/** A digest AlgorithmIdentifier for SHA-256: parameters absent or NULL (RFC 4055 §2.1 accepts both). */
function isSha256Identifier(node: forge.asn1.Asn1 | undefined): boolean {
  if (!node || !isUniversal(node, asn1.Type.SEQUENCE)) return false
  const [algorithm, params, ...rest] = children(node)
  if (rest.length > 0 || oidOf(algorithm) !== SHA256_OID) return false
  return params === undefined || isUniversal(params, asn1.Type.NULL)
}

function checkPssAlgorithm(sigAlg: forge.asn1.Asn1): void {
  const [algorithm, params, ...rest] = children(sigAlg, asn1.Type.SEQUENCE, 'signatureAlgorithm')
  const name = oidOf(algorithm)
  if (name !== RSASSA_PSS_OID) {
    fail(
      'signature_algorithm',
      `signature algorithm is ${name ?? 'unreadable'}, expected RSASSA-PSS (${RSASSA_PSS_OID})`,
    )
  }
  // Explicit parameters are required: the defaults would mean SHA-1, MGF1-SHA-1, salt 20.
  if (!params || rest.length > 0 || !isUniversal(params, asn1.Type.SEQUENCE)) {
    fail('pss_parameters', 'RSASSA-PSS parameters must be present')
  }
  let hashOk = false
  let mgfOk = false
  let salt: number | undefined
  for (const field of children(params)) {
    const inner = children(field)[0]
    if (isContext(field, 0)) {
      hashOk = isSha256Identifier(inner)
    } else if (isContext(field, 1)) {
      const [mgf, mgfHash] = inner && isUniversal(inner, asn1.Type.SEQUENCE) ? children(inner) : []
      mgfOk = oidOf(mgf) === MGF1_OID && isSha256Identifier(mgfHash)
    } else if (isContext(field, 2)) {
      salt = integerOf(inner)
    } else if (isContext(field, 3)) {
      if (integerOf(inner) !== 1) fail('pss_parameters', 'RSASSA-PSS trailerField must be 1 (trailerFieldBC)')
    } else {
      fail('pss_parameters', 'unexpected field in RSASSA-PSS parameters')
    }
  }
  if (!hashOk) fail('pss_parameters', 'RSASSA-PSS hashAlgorithm must be SHA-256')
  if (!mgfOk) fail('pss_parameters', 'RSASSA-PSS maskGenAlgorithm must be MGF1 with SHA-256')
  if (salt !== PSS_SALT_LENGTH)
    fail(
      'pss_parameters',
      `RSASSA-PSS saltLength must be ${PSS_SALT_LENGTH}, got ${salt ?? 'the default (20)'}`,
    )
}

function publicKey(spki: forge.asn1.Asn1): { key: KeyObject; modulusBits: number; publicKeyPem: string } {
  let key: KeyObject
  try {
    const der = Buffer.from(asn1.toDer(spki).getBytes(), 'binary')
    key = createPublicKey({ key: der, format: 'der', type: 'spki' })
  } catch (error) {
    fail('public_key', `subjectPublicKeyInfo is not a usable public key: ${(error as Error).message}`)
  }
  if (key.asymmetricKeyType !== 'rsa')
    fail('public_key', `public key is ${key.asymmetricKeyType ?? 'unknown'}, expected RSA`)
  const modulusBits = key.asymmetricKeyDetails?.modulusLength ?? 0
  if (modulusBits < MIN_MODULUS_BITS)
    fail('key_size', `RSA key is ${modulusBits} bits, at least ${MIN_MODULUS_BITS} required`)
  return { key, modulusBits, publicKeyPem: key.export({ type: 'spki', format: 'pem' }).toString() }
}

function subjectAttributes(subject: forge.asn1.Asn1): { oid: string; value: string }[] {
  const names: { oid: string; value: string }[] = []
  for (const rdn of children(subject, asn1.Type.SEQUENCE, 'subject')) {
    if (!isUniversal(rdn, asn1.Type.SET)) fail('subject', 'subject RDN is not a SET')
    for (const atv of children(rdn)) {
      const [type, value] = isUniversal(atv, asn1.Type.SEQUENCE) ? children(atv) : []
      const name = oidOf(type)
      if (!name || !value) fail('subject', 'subject attribute is malformed')
      names.push({ oid: name, value: decodeString(value) })
    }
  }
  return names
}

function decodeString(node: forge.asn1.Asn1): string {
  const raw = bytesOf(node)
  if (isUniversal(node, asn1.Type.UTF8)) {
    try {
      return forge.util.decodeUtf8(raw)
    } catch {
      fail('structure', 'UTF8String is not valid UTF-8')
    }
  }
  if (isUniversal(node, asn1.Type.PRINTABLESTRING) || isUniversal(node, asn1.Type.IA5STRING)) return raw
  fail('subject', `subject value has unsupported string type ${node.type}`)
}

/** Order-independent: a verifier should not care whether CN or DC comes first in the DER. */
function checkSubject(names: { oid: string; value: string }[], expected: CsrExpectations): void {
  const cns = names.filter((n) => n.oid === COMMON_NAME_OID)
  const dcs = names.filter((n) => n.oid === DOMAIN_COMPONENT_OID)
  const others = names.filter((n) => n.oid !== COMMON_NAME_OID && n.oid !== DOMAIN_COMPONENT_OID)
  if (cns.length !== 1 || dcs.length !== 1 || others.length > 0) {
    fail('subject', 'subject must be exactly CN={clientId}, DC={tenantId}')
  }
  if (cns[0]?.value.toLowerCase() !== expected.clientId.toLowerCase()) {
    fail('subject', `subject CN ${cns[0]?.value} is not this identity's client id ${expected.clientId}`)
  }
  if (dcs[0]?.value.toLowerCase() !== expected.tenantId.toLowerCase()) {
    fail('subject', `subject DC ${dcs[0]?.value} is not this identity's tenant id ${expected.tenantId}`)
  }
}

function cuIdAttribute(attributes: forge.asn1.Asn1): string | undefined {
  if (!isContext(attributes, 0)) fail('structure', 'CSR attributes [0] are missing')
  for (const attribute of children(attributes)) {
    const [type, values] = isUniversal(attribute, asn1.Type.SEQUENCE) ? children(attribute) : []
    if (oidOf(type) !== CUID_ATTRIBUTE_OID) continue
    const items = values && isUniversal(values, asn1.Type.SET) ? children(values) : []
    const [value] = items
    if (items.length !== 1 || !value || !isUniversal(value, asn1.Type.UTF8)) {
      fail('cuid_attribute', 'cuId attribute must hold exactly one UTF8String')
    }
    return decodeString(value)
  }
  return undefined
}
