import { createPublicKey } from 'node:crypto'
import type forge from 'node-forge'
import { lazyNamespace, nodeForge } from './forge.ts'

/**
 * The PKCS#10 certificate signing request IMDS v2 `issuecredential` expects, as MSAL.NET builds it
 * (`ManagedIdentity/V2/Csr.cs`, and the downlevel encoder `ManagedIdentity/V2/CertificateRequest.cs`
 * which spells out every byte). node-forge's CSR API can only sign PKCS#1 v1.5, so the structure
 * is built here with `forge.asn1` and signed with RSASSA-PSS through the key's own signer.
 */

/** Attribute carrying the VM's compute unit id (cuId) JSON. */
export const CUID_ATTRIBUTE_OID = '1.3.6.1.4.1.311.90.2.10'
export const RSASSA_PSS_OID = '1.2.840.113549.1.1.10'
export const RSA_ENCRYPTION_OID = '1.2.840.113549.1.1.1'
export const SHA256_OID = '2.16.840.1.101.3.4.2.1'
export const MGF1_OID = '1.2.840.113549.1.1.8'
export const COMMON_NAME_OID = '2.5.4.3'
export const DOMAIN_COMPONENT_OID = '0.9.2342.19200300.100.1.25'
/** PSS salt length: the SHA-256 digest length, as MSAL writes it. */
export const PSS_SALT_LENGTH = 32

export interface CsrRequest {
  /** Managed identity client id from getplatformmetadata: the subject CN. */
  clientId: string
  /** Tenant id from getplatformmetadata: the subject DC. */
  tenantId: string
  /** The cuId JSON text (see `cuIdJson`). */
  cuIdJson: string
  /** SPKI PEM of the key being certified. */
  publicKeyPem: string
  /** RSASSA-PSS / SHA-256 / MGF1-SHA-256 / salt 32 signature over `data` with the matching private key. */
  signPss(data: Buffer): Promise<Buffer>
}

/**
 * Builds the CSR and returns it as IMDS wants it: base64 of the DER, no PEM armour, no line
 * breaks (MSAL strips the PEM header and newlines from `CreateSigningRequestPem()`).
 */
export async function buildCsr(request: CsrRequest): Promise<string> {
  const info = certificationRequestInfo(request)
  const infoDer = Buffer.from(asn1.toDer(info).getBytes(), 'binary')
  const signature = await request.signPss(infoDer)
  const csr = seq([
    info,
    pssAlgorithmIdentifier(),
    // BIT STRING: one leading byte for "0 unused bits", then the signature.
    asn1.create(UNIVERSAL, asn1.Type.BITSTRING, false, '\x00' + signature.toString('binary')),
  ])
  return Buffer.from(asn1.toDer(csr).getBytes(), 'binary').toString('base64')
}

/**
 * The cuId JSON for the CSR attribute. MSAL re-serialises its `CuidInfo` (vmId, then vmssId, nulls
 * omitted — tests `CsrValidator.cs`); IMDS sends that same compact shape, so serialising the
 * parsed object in IMDS's own key order with nulls dropped reproduces the text IMDS sent (modulo
 * insignificant whitespace) and keeps any field a newer IMDS adds.
 */
export function cuIdJson(cuId: Readonly<Record<string, unknown>>): string {
  return JSON.stringify(cuId, (_key, value: unknown) => (value === null ? undefined : value))
}

const asn1 = lazyNamespace(() => nodeForge().asn1)
// ASN.1 tag classes (X.690 §8.1.2.2): forge's asn1.Class values, spelled out so that loading this
// module does not load forge.
const UNIVERSAL = 0x00 as forge.asn1.Class
const CONTEXT_SPECIFIC = 0x80 as forge.asn1.Class

function seq(items: forge.asn1.Asn1[]): forge.asn1.Asn1 {
  return asn1.create(UNIVERSAL, asn1.Type.SEQUENCE, true, items)
}

function set(items: forge.asn1.Asn1[]): forge.asn1.Asn1 {
  return asn1.create(UNIVERSAL, asn1.Type.SET, true, items)
}

function oid(value: string): forge.asn1.Asn1 {
  return asn1.create(UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(value).getBytes())
}

function integer(value: number): forge.asn1.Asn1 {
  return asn1.create(UNIVERSAL, asn1.Type.INTEGER, false, asn1.integerToDer(value).getBytes())
}

function explicit(tag: number, inner: forge.asn1.Asn1): forge.asn1.Asn1 {
  return asn1.create(CONTEXT_SPECIFIC, tag, true, [inner])
}

function certificationRequestInfo(request: CsrRequest): forge.asn1.Asn1 {
  const spkiDer = createPublicKey(request.publicKeyPem).export({ type: 'spki', format: 'der' })
  const spki = asn1.fromDer(nodeForge().util.createBuffer(spkiDer.toString('binary')))
  const cuIdAttribute = seq([
    oid(CUID_ATTRIBUTE_OID),
    set([asn1.create(UNIVERSAL, asn1.Type.UTF8, false, nodeForge().util.encodeUtf8(request.cuIdJson))]),
  ])
  return seq([
    integer(0), // version v1(0)
    subjectName(request.clientId, request.tenantId),
    spki,
    // attributes [0] IMPLICIT SET OF Attribute
    asn1.create(CONTEXT_SPECIFIC, 0, true, [cuIdAttribute]),
  ])
}

/**
 * MSAL writes `new X500DistinguishedName($"CN={clientId}, DC={tenantId}")`. That constructor
 * defaults to `X500DistinguishedNameFlags.Reversed` (RFC 4514 strings list the most specific RDN
 * first, the DER lists it last), so the RDNSequence on the wire is DC then CN — which reads back
 * as "CN=…, DC=…". .NET's encoder picks IA5String for DC (RFC 4519) and PrintableString for CN
 * when the value allows it (a GUID does), else UTF8String.
 */
function subjectName(clientId: string, tenantId: string): forge.asn1.Asn1 {
  const rdn = (type: string, tag: forge.asn1.Type, value: string) =>
    set([seq([oid(type), asn1.create(UNIVERSAL, tag, false, value)])])
  const cn = isPrintableString(clientId)
    ? rdn(COMMON_NAME_OID, asn1.Type.PRINTABLESTRING, clientId)
    : rdn(COMMON_NAME_OID, asn1.Type.UTF8, nodeForge().util.encodeUtf8(clientId))
  // IA5String is 7-bit; a tenant id is a GUID (or a domain name), so anything else is a bug upstream.
  if (!/^[\x00-\x7f]*$/.test(tenantId)) throw new TypeError('tenantId is not an IA5String')
  return seq([rdn(DOMAIN_COMPONENT_OID, asn1.Type.IA5STRING, tenantId), cn])
}

function isPrintableString(value: string): boolean {
  return /^[A-Za-z0-9 '()+,\-./:=?]*$/.test(value)
}

/**
 * sigAlg = RSASSA-PSS with explicit RSASSA-PSS-params, exactly as MSAL's `CertificateRequest.cs`:
 * hashAlgorithm [0] sha256 (parameters absent), maskGenAlgorithm [1] mgf1 with sha256,
 * saltLength [2] 32, trailerField left at its DEFAULT (trailerFieldBC) and so omitted.
 */
function pssAlgorithmIdentifier(): forge.asn1.Asn1 {
  return seq([
    oid(RSASSA_PSS_OID),
    seq([
      explicit(0, seq([oid(SHA256_OID)])),
      explicit(1, seq([oid(MGF1_OID), seq([oid(SHA256_OID)])])),
      explicit(2, integer(PSS_SALT_LENGTH)),
    ]),
  ])
}
