import { createPrivateKey, randomUUID, X509Certificate } from 'node:crypto'
import { SignJWT } from 'jose'
import type { Clock } from '../../core/clock.ts'
import { splitPemCertificates, x5tS256 } from '../../pki/x509.ts'

/** Lifetime of a client assertion; MSAL uses ten minutes (`JsonWebToken.JwtToAadLifetimeInSeconds`). */
export const clientAssertionLifetimeSec = 600

export interface ClientAssertionOptions {
  clientId: string
  /** The token endpoint the assertion is sent to: its `aud`. */
  tokenEndpoint: string
  /** Leaf certificate (PEM), optionally followed by its chain. */
  certificatePem: string
  /** PKCS#8 PEM of the leaf's key. Never logged. */
  privateKeyPem: string
  /** Add the `x5c` header (certificate chain) for subject-name/issuer authentication. */
  sendX5C: boolean
  clock: Clock
}

/**
 * Signs a private_key_jwt client assertion (RFC 7523) with the app certificate's key.
 *
 * PS256 goes with the `x5t#S256` header: MSAL.NET `Internal/JsonWebToken.cs` pairs SHA-256
 * thumbprints with RSASSA-PSS ("ESTS added support for PSS") and keeps RS256 only for the legacy
 * SHA-1 `x5t`. `x5c` is the RFC 7515 array of base64 DER certificates, leaf first.
 *
 * @example
 * const assertion = await signClientAssertion({ clientId, tokenEndpoint, certificatePem, privateKeyPem, sendX5C: false, clock })
 */
export async function signClientAssertion(options: ClientAssertionOptions): Promise<string> {
  const chain = splitChain(options.certificatePem)
  const leaf = chain[0]
  if (!leaf) throw new TypeError('certificatePem holds no certificate')
  const header: { alg: 'PS256'; typ: 'JWT'; 'x5t#S256': string; x5c?: string[] } = {
    alg: 'PS256',
    typ: 'JWT',
    'x5t#S256': x5tS256(leaf.raw),
  }
  if (options.sendX5C) header.x5c = chain.map((c) => c.raw.toString('base64'))
  const now = Math.floor(options.clock.now() / 1000)
  return new SignJWT({})
    .setProtectedHeader(header)
    .setAudience(options.tokenEndpoint)
    .setIssuer(options.clientId)
    .setSubject(options.clientId)
    .setJti(randomUUID())
    .setNotBefore(now)
    .setIssuedAt(now)
    .setExpirationTime(now + clientAssertionLifetimeSec)
    .sign(createPrivateKey(options.privateKeyPem))
}

function splitChain(pem: string): X509Certificate[] {
  return splitPemCertificates(pem).map((block) => new X509Certificate(block))
}
