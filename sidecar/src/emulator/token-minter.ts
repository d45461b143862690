import {
  exportJWK,
  importPKCS8,
  importSPKI,
  SignJWT,
  jwtVerify,
  createLocalJWKSet,
  type JWK,
  type JWTPayload,
  type CryptoKey,
} from 'jose'
import { randomUUID } from 'node:crypto'
import type { Clock } from '../core/clock.ts'
import type { RsaKeyPair } from '../pki/keys.ts'

/**
 * The emulator's token issuer: RS256 JWTs shaped like Entra access tokens. Resources (the demo
 * resource, tests) verify them against `jwks()`.
 */
export class TokenMinter {
  readonly #clock: Clock
  readonly #privateKey: CryptoKey
  readonly #publicJwk: JWK

  private constructor(clock: Clock, privateKey: CryptoKey, publicJwk: JWK) {
    this.#clock = clock
    this.#privateKey = privateKey
    this.#publicJwk = publicJwk
  }

  /** A minter signing with `keys` (RSA, used as RS256). */
  static async create(clock: Clock, keys: RsaKeyPair): Promise<TokenMinter> {
    const privateKey = await importPKCS8(keys.privateKeyPem, 'RS256')
    const publicKey = await importSPKI(keys.publicKeyPem, 'RS256', { extractable: true })
    const jwk = { ...(await exportJWK(publicKey)), kid: randomUUID(), alg: 'RS256', use: 'sig' }
    return new TokenMinter(clock, privateKey, jwk)
  }

  /** Mints an access token. `claims` must include aud, iss, tid, sub; exp is now + lifetimeSec. */
  async mint(
    claims: JWTPayload & { aud: string; iss: string; tid: string; sub: string },
    lifetimeSec: number,
  ): Promise<string> {
    const now = Math.floor(this.#clock.now() / 1000)
    return new SignJWT({ ...claims, uti: randomUUID() })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: this.#publicJwk.kid ?? '' })
      .setIssuedAt(now)
      .setNotBefore(now - 300)
      .setExpirationTime(now + lifetimeSec)
      .sign(this.#privateKey)
  }

  jwks(): { keys: JWK[] } {
    return { keys: [this.#publicJwk] }
  }

  /** Verifies a token this minter issued (signature, exp/nbf against the injected clock). */
  async verify(token: string, options: { audience?: string } = {}): Promise<JWTPayload> {
    const { payload } = await jwtVerify(token, createLocalJWKSet(this.jwks()), {
      currentDate: new Date(this.#clock.now()),
      ...(options.audience === undefined ? {} : { audience: options.audience }),
    })
    return payload
  }
}
