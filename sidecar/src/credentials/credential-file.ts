import { describeFileProblem, readCheckedFileSync, trustedFile } from '../core/trusted-file.ts'

/** The config key of a credential's file, as messages name it. */
export function credentialFileKey(identity: string, index: number, field: string): string {
  return `identities.${identity}.clientCredentials[${index}].${field}`
}

/**
 * Why a credential's file cannot be used, in one wording at start and on the request path: the key,
 * then core's sentence (`identities.app.clientCredentials[0].certificateDiskPath: /certs/app.pem is
 * owned by uid 65534…`, or `…: cannot read /certs/app.pem (ENOENT)`). Never the file's content.
 */
export function credentialFileProblem(key: string, path: string, error: unknown): string {
  return `${key}: ${describeFileProblem(path, error)}`
}

/**
 * At start, a credential's file (certificate, PKCS#12, token) must be there, readable and trusted
 * (contract §2: a regular file, a symlink to one being fine, owned by the daemon's uid or root, not
 * writable by group or others); otherwise the daemon does not start, and the message names the key.
 * Opened without blocking: a FIFO is refused, never waited on. The content is parsed later.
 */
export function requireCredentialFile(path: string, key: string): void {
  try {
    readCheckedFileSync(path, trustedFile)
  } catch (error) {
    throw new Error(credentialFileProblem(key, path, error))
  }
}
