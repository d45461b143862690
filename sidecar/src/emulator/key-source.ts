import { generateRsaKeyPair, type RsaKeyPair } from '../pki/keys.ts'

/** What one of the emulator's own RSA keys is for. */
export type EmulatorKeyRole = 'ca' | 'entra-tls' | 'resource-tls' | 'token-signing' | 'workload-issuer'

/**
 * Where the emulator's own RSA-2048 keys come from: its CA, the TLS keys of the emulated Entra and
 * the demo resource, the token signing key and registered workload issuers' keys. Keys the emulator
 * issues certificates for on request (binding keys, app certificates) are not its own: they come
 * from whoever asks. `credential-sidecar demo` generates every key afresh; a test process may hand
 * every emulator it starts the same few keys, one per role, since generating them is most of what
 * starting an emulator costs.
 */
export interface EmulatorKeySource {
  rsaKeyPair(role: EmulatorKeyRole): Promise<RsaKeyPair>
}

/** A fresh key for every use. */
export function freshEmulatorKeys(): EmulatorKeySource {
  return { rsaKeyPair: () => generateRsaKeyPair(2048) }
}
