import { constants, createPrivateKey, createPublicKey, sign, type KeyObject } from 'node:crypto'
import type { KeyProtection } from '../model/binding.ts'
import { PSS_SALT_LENGTH } from './csr.ts'
import { generateRsaKeyPair, type RsaKeyPair } from './keys.ts'

/**
 * A binding key: the key an IMDS v2 certificate is issued for. Signing goes through the key
 * (`signPss`), so a TPM/HSM-backed provider can sign the CSR without the private key ever leaving
 * the device. Today every key is a software key and its PKCS#8 PEM is part of the pair, because
 * the mTLS agents (undici, the SDK) take PEM; a non-exportable provider would make
 * `privateKeyPem` optional here and in `BindingCertificate`, and such identities would then be
 * served in proxy mode only (contract §2, `exposePrivateKey`).
 */
export interface BindingKey extends RsaKeyPair {
  readonly protection: KeyProtection
  /** RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32: what the IMDS v2 CSR is signed with. */
  signPss(data: Buffer): Promise<Buffer>
}

/** Where binding keys come from. */
export interface KeyProvider {
  readonly protection: KeyProtection
  generate(): Promise<BindingKey>
}

/**
 * RSA-2048 software keys from node:crypto (native OpenSSL, in the libuv thread pool). MSAL.NET
 * demands a Windows KeyGuard key (`ImdsV2ManagedIdentitySource.cs`, `mtls_pop_requires_keyguard`)
 * and has no Linux path; the daemon uses a software key and says so (`key_protection: software`).
 */
export class SoftwareKeyProvider implements KeyProvider {
  readonly protection = 'software' as const
  readonly #modulusLength: number

  constructor(options: { modulusLength?: number } = {}) {
    this.#modulusLength = options.modulusLength ?? 2048
  }

  async generate(): Promise<BindingKey> {
    return softwareKey(await generateRsaKeyPair(this.#modulusLength))
  }
}

/** Wraps an existing software key pair (e.g. one loaded from the binding store). */
export function softwareKey(pair: RsaKeyPair): BindingKey {
  let privateKey: KeyObject | undefined
  return {
    protection: 'software',
    privateKeyPem: pair.privateKeyPem,
    publicKeyPem: pair.publicKeyPem,
    async signPss(data) {
      privateKey ??= createPrivateKey(pair.privateKeyPem)
      return sign('sha256', data, {
        key: privateKey,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: PSS_SALT_LENGTH,
      })
    },
  }
}

/** Rebuilds a software key from its PKCS#8 PEM alone (the store keeps only the private half). */
export function softwareKeyFromPrivatePem(privateKeyPem: string): BindingKey {
  const publicKeyPem = createPublicKey(privateKeyPem).export({ type: 'spki', format: 'pem' }).toString()
  return softwareKey({ privateKeyPem, publicKeyPem })
}

/**
 * Keeps one key generated ahead, so a mint never waits for key generation: `prefill()` at start
 * makes the first mint after start free of keygen, and every `take()` starts the next key in the
 * background for the next renewal or re-mint. A key is used for one certificate only.
 */
export class KeyPool {
  readonly #provider: KeyProvider
  #next: Promise<BindingKey> | undefined
  #returned: BindingKey | undefined
  #closed = false

  constructor(provider: KeyProvider) {
    this.#provider = provider
  }

  get protection(): KeyProtection {
    return this.#provider.protection
  }

  /** Starts generating the next key if none is ready or under way; resolves once one is (never rejects). */
  prefill(): Promise<void> {
    if (this.#closed || this.#returned) return Promise.resolve()
    this.#next ??= this.#generate()
    return this.#next.then(
      () => undefined,
      () => undefined,
    )
  }

  /** The pre-generated key (waiting for it if still under way, generating one if it failed), then refills. */
  async take(): Promise<BindingKey> {
    const returned = this.#returned
    if (returned) {
      this.#returned = undefined
      void this.prefill()
      return returned
    }
    const pending = this.#next
    this.#next = undefined
    let key: BindingKey
    try {
      key = await (pending ?? this.#provider.generate())
    } catch {
      // The background attempt failed (resource exhaustion?): try once more in the caller's time.
      key = await this.#provider.generate()
    }
    void this.prefill()
    return key
  }

  /**
   * Returns a key that was taken but never used (no CSR with it left the process), so a failed
   * attempt does not cost another keygen. It is the next one `take()` hands out.
   */
  giveBack(key: BindingKey): void {
    if (this.#closed || this.#returned) return
    this.#returned = key
  }

  /** Drops the spare key and stops refilling. */
  close(): void {
    this.#closed = true
    this.#next = undefined
    this.#returned = undefined
  }

  #generate(): Promise<BindingKey> {
    const promise = this.#provider.generate()
    // A failure surfaces at take(); do not let it become an unhandled rejection meanwhile.
    promise.catch(() => undefined)
    return promise
  }
}
