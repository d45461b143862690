import { generateKeyPair } from 'node:crypto'
import { promisify } from 'node:util'

const generateKeyPairAsync = promisify(generateKeyPair)

export interface RsaKeyPair {
  /** PKCS#8 PEM. */
  privateKeyPem: string
  /** SPKI PEM. */
  publicKeyPem: string
}

/** RSA key generation is native (OpenSSL via node:crypto), never JavaScript. */
export async function generateRsaKeyPair(modulusLength = 2048): Promise<RsaKeyPair> {
  const { privateKey, publicKey } = await generateKeyPairAsync('rsa', {
    modulusLength,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  })
  return { privateKeyPem: privateKey, publicKeyPem: publicKey }
}
