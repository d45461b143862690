import type { CertificateSource } from '../config/types.ts'
import { isBoundCredential } from '../config/token-scheme.ts'
import { SidecarError } from '../core/errors.ts'
import { WatchedFile, type FileCheck } from '../core/watched-file.ts'
import { trustedFile } from '../core/trusted-file.ts'
import { credentialFileKey, credentialFileProblem, requireCredentialFile } from './credential-file.ts'
import {
  CertificateLoadError,
  decodeBase64Certificate,
  parseAppCertificate,
  type AppCertificate,
} from './app-certificate.ts'
import { signClientAssertion } from '../upstream/entra/client-assertion.ts'
import {
  boundCertificateRequest,
  certificateAssertionRequest,
  withClaims,
} from '../upstream/entra/requests.ts'
import type { AcquiredToken } from '../model/token.ts'
import type { BindingCertificate } from '../model/binding.ts'
import type { CredentialBundle } from '../model/bundle.ts'
import type { Scope } from '../model/scope.ts'
import { appRequest, type AppContext, type CredentialSource, type SourceTokenRequest } from './source.ts'
import { dropBinding } from './binding-retry.ts'
import { boundOrBearerFallback } from './bearer-fallback.ts'

type Base64Certificate = Extract<CertificateSource, { sourceType: 'Base64Encoded' }>
type FileCertificate = Extract<CertificateSource, { sourceType: 'Path' }>

/** A rotated file is noticed within this long; the check is a stat, not a read. */
const fileCheckIntervalMs = 1000

/**
 * An app certificate from a file (`Path`) or from config (`Base64Encoded`).
 *
 * - Presented over mTLS (`useBoundCredential: true`, or `protocolScheme: MTLS_POP`, which needs the
 *   TLS handshake): `boundCertificateRequest` on the mTLS host; for Bearer with a jwt-bearer client
 *   assertion (x5c) signed by the same certificate as well, for mtls_pop with none.
 * - Otherwise a private_key_jwt signed with it to the regular endpoint (Bearer).
 *
 * `load` returns the certificate in both modes, so it is part of the token cache key: a rotated
 * certificate gets new tokens at once, and an `invalid_client` makes the identity (`Identity.token`) call
 * `invalidate`, which re-reads the file before the one retry — the cheapest way to pick up a
 * rotation that landed between two file checks.
 *
 * A `Path` file is checked at most once a second (stat: inode, size, mtime, ctime) and re-read when
 * it changed, so rotation needs no restart. A file that disappears or stops parsing no longer
 * loads, and the chain falls through.
 */
export class CertificateCredential implements CredentialSource {
  readonly label: string
  readonly canBind = true
  readonly #app: AppContext
  readonly #source: CertificateSource
  /** Presented in the TLS handshake rather than proven by a client assertion. */
  readonly #overMtls: boolean
  /** `Path`: the file, re-read when it changes. */
  #file: WatchedFile<AppCertificate> | undefined
  /** `Base64Encoded`: parsed once. */
  #decoded: AppCertificate | undefined
  /** The config key of the file, for messages. */
  readonly #key: string

  /** A `Path` file must be there and trusted at start (else the daemon does not start). */
  constructor(app: AppContext, source: CertificateSource, index: number) {
    this.#app = app
    this.#source = source
    this.#overMtls = isBoundCredential(app.tokenType, source)
    const where = source.sourceType === 'Path' ? ` ${source.certificateDiskPath}` : ''
    this.label = `clientCredentials[${index}] (${source.sourceType}${where})`
    this.#key = credentialFileKey(app.identityName, index, 'certificateDiskPath')
    if (source.sourceType === 'Path') requireCredentialFile(source.certificateDiskPath, this.#key)
  }

  async load(): Promise<BindingCertificate> {
    return (await this.#certificate()).binding
  }

  async acquireToken({ scope, signal, claims }: SourceTokenRequest): Promise<AcquiredToken> {
    const app = this.#app
    const certificate = await this.#certificate()
    if (this.#overMtls) {
      // Bearer over mTLS still proves the certificate in the body too: a private_key_jwt whose
      // aud is the mTLS token endpoint it is posted to, always with x5c (requests.ts).
      const assertion =
        app.tokenType === 'Bearer'
          ? await signClientAssertion({
              clientId: app.clientId,
              tokenEndpoint: app.mtlsTokenEndpoint,
              certificatePem: certificate.chainPem,
              privateKeyPem: certificate.binding.privateKeyPem,
              sendX5C: true,
              clock: app.runtime.clock,
            })
          : undefined
      const request = boundCertificateRequest({
        ...appRequest(app, scope),
        tokenEndpoint: app.mtlsTokenEndpoint,
        allowBearerFallback: app.allowBearerFallback,
        certificate: certificate.binding,
        tokenType: app.tokenType,
        ...(assertion === undefined ? {} : { assertion }),
      })
      // Entra refuses bound tokens for the tenant: a private_key_jwt on the regular endpoint instead.
      return boundOrBearerFallback(() => app.entra.requestToken(withClaims(request, claims), signal), {
        allowed: app.allowBearerFallback,
        requested: app.tokenType,
        runtime: app.runtime,
        identity: app.identityName,
        credential: this.label,
        onRefusal: {
          via: 'private_key_jwt',
          served: 'obtained with a client assertion',
          bearer: () => this.#assertionToken(certificate, scope, signal, claims),
        },
      })
    }
    return this.#assertionToken(certificate, scope, signal, claims)
  }

  /** Bearer with a private_key_jwt to the regular endpoint (not bound). */
  async #assertionToken(
    certificate: AppCertificate,
    scope: Scope,
    signal: AbortSignal,
    claims: string | undefined,
  ): Promise<AcquiredToken> {
    const app = this.#app
    const assertion = await signClientAssertion({
      clientId: app.clientId,
      tokenEndpoint: app.tokenEndpoint,
      certificatePem: certificate.chainPem,
      privateKeyPem: certificate.binding.privateKeyPem,
      sendX5C: app.sendX5C,
      clock: app.runtime.clock,
    })
    const request = certificateAssertionRequest({ ...appRequest(app, scope), assertion })
    return app.entra.requestToken(withClaims(request, claims), signal)
  }

  invalidate(binding: BindingCertificate): void {
    const current = this.#file?.value ?? this.#decoded
    if (current?.binding.x5tS256 !== binding.x5tS256) return
    // Re-read on the next load even if the file looks unchanged.
    dropBinding(binding, { invalidate: () => this.#file?.forget() }, this.#app.entra)
  }

  async bundle(): Promise<CredentialBundle> {
    const app = this.#app
    if (!this.#overMtls) {
      throw new SidecarError(
        'no_bound_credential',
        `Identity "${app.identityName}" signs client assertions with ${this.label} and presents no certificate over mTLS (set useBoundCredential: true or protocolScheme: MTLS_POP)`,
      )
    }
    const { binding } = await this.#certificate()
    return {
      identity: app.identityName,
      clientId: app.clientId,
      tenantId: app.tenantId,
      tokenEndpoint: app.mtlsTokenEndpoint,
      keyProtection: binding.keyProtection,
      binding,
    }
  }

  /** The certificate as of now; the file is looked at no more than once a second. */
  async #certificate(): Promise<AppCertificate> {
    const source = this.#source
    try {
      if (source.sourceType === 'Base64Encoded') return this.#decodedCertificate(source)
      return await this.#fromFile((this.#file ??= this.#watch(source)))
    } catch (error) {
      throw loadFailure(this.label, error)
    }
  }

  /** Static config: parsed once, checked again only for expiry. */
  #decodedCertificate(source: Base64Certificate): AppCertificate {
    const { clock } = this.#app.runtime
    this.#decoded ??= parseAppCertificate(
      decodeBase64Certificate(source.base64EncodedValue),
      source.certificatePassword,
      clock.now(),
    )
    if (clock.now() >= this.#decoded.binding.notAfter) {
      const expired = this.#decoded
      this.#decoded = undefined
      throw new CertificateLoadError(
        `its certificate expired on ${new Date(expired.binding.notAfter).toISOString()}`,
      )
    }
    return this.#decoded
  }

  #watch(source: FileCertificate): WatchedFile<AppCertificate> {
    const { clock } = this.#app.runtime
    return new WatchedFile({
      path: source.certificateDiskPath,
      clock,
      checkIntervalMs: fileCheckIntervalMs,
      // Contract §2: an owned regular file, not writable by group or others; checked on every read.
      check: trustedFile,
      parse: (bytes) => parseAppCertificate(bytes, source.certificatePassword, clock.now()),
      isStale: (certificate, now) => now >= certificate.binding.notAfter,
    })
  }

  /** A file that disappears or stops parsing no longer loads (the chain falls through). */
  async #fromFile(file: WatchedFile<AppCertificate>): Promise<AppCertificate> {
    const recent = file.recent
    if (recent) return recent
    let checked: FileCheck<AppCertificate>
    try {
      checked = await file.check()
    } catch (error) {
      if (error instanceof CertificateLoadError) throw error
      throw new CertificateLoadError(credentialFileProblem(this.#key, file.path, error))
    }
    return this.#loaded(checked)
  }

  /** A new certificate in the file: the old one's mTLS connections go, and the change is logged. */
  #loaded({ value: loaded, previous }: FileCheck<AppCertificate>): AppCertificate {
    if (previous?.binding.x5tS256 !== loaded.binding.x5tS256) {
      if (previous) this.#app.entra.evictBinding(previous.binding.x5tS256)
      this.#app.runtime.logger.info(
        {
          identity: this.#app.identityName,
          credential: this.label,
          event: previous ? 'certificate_rotated' : 'certificate_loaded',
          'x5t#S256': loaded.binding.x5tS256,
          subject: loaded.subject.replace(/\n/g, ', '),
          not_after: new Date(loaded.binding.notAfter).toISOString(),
        },
        previous ? 'certificate file changed; using the new certificate' : 'certificate loaded',
      )
    }
    return loaded
  }
}

/** A certificate that does not load is a credential problem, not an upstream one. */
function loadFailure(label: string, error: unknown): SidecarError {
  const why = error instanceof CertificateLoadError ? error.message : 'unreadable certificate'
  return new SidecarError('credential_unavailable', `${label}: ${why}`)
}
