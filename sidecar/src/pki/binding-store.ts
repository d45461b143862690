import { randomUUID } from 'node:crypto'
import { constants, promises as fs } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { SidecarError } from '../core/errors.ts'
import type { KeyProtection } from '../model/binding.ts'

/** What the store keeps for one identity: enough to serve the binding after a restart without IMDS. */
export interface StoredBinding {
  /** Which managed identity this belongs to (`selectorKey`), so a changed config never reuses it. */
  selector: string
  clientId: string
  tenantId: string
  tokenEndpoint: string
  identityType: string
  certificatePem: string
  /** PKCS#8 PEM. The reason the file is 0600. */
  privateKeyPem: string
  keyProtection: KeyProtection
}

interface StoreFile extends StoredBinding {
  version: 1
  savedAt: string
}

/**
 * Optional persistence of an IMDS v2 binding key and certificate (`managedIdentity.bindingStore`),
 * so a restart reuses a certificate that still has days to live instead of minting a new one
 * (IMDS throttles, and every new certificate invalidates every cached PoP token).
 *
 * The file holds a private key: it is created 0600 (temp file + rename, so a reader never sees a
 * half-written file and the mode is set before any byte is written) and a file that group or
 * others can read is refused on load.
 */
export class BindingStore {
  readonly path: string

  constructor(path: string) {
    this.path = path
  }

  /** The stored binding; undefined when there is no file. Throws a SidecarError when it is unsafe or unreadable. */
  async load(): Promise<StoredBinding | undefined> {
    let handle: fs.FileHandle
    try {
      // O_NOFOLLOW: the key file must not be a symlink to somewhere an attacker chose.
      handle = await fs.open(this.path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0))
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw storeError(
        `binding store ${this.path} cannot be opened (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
        error,
      )
    }
    try {
      // fstat on the open handle: the mode checked is the mode of the file read.
      const stat = await handle.stat()
      if (!stat.isFile()) throw storeError(`binding store ${this.path} is not a regular file`)
      const mode = stat.mode & 0o777
      if ((mode & 0o077) !== 0) {
        throw storeError(
          `binding store ${this.path} is readable by group or others (mode ${mode.toString(8).padStart(4, '0')}); ` +
            `it holds a private key and is refused: chmod 600 it or delete it`,
        )
      }
      const text = await handle.readFile('utf8')
      return parse(text, this.path)
    } finally {
      await handle.close()
    }
  }

  /** Atomically replaces the file with `binding`, mode 0600. */
  async save(binding: StoredBinding): Promise<void> {
    const dir = dirname(this.path)
    await fs.mkdir(dir, { recursive: true, mode: 0o700 })
    const temp = join(dir, `.${basename(this.path)}.${randomUUID()}.tmp`)
    const body: StoreFile = { version: 1, savedAt: new Date().toISOString(), ...binding }
    try {
      // 'wx' + mode: the file is born 0600 (umask can only narrow it) and never pre-exists.
      const handle = await fs.open(temp, 'wx', 0o600)
      try {
        await handle.writeFile(JSON.stringify(body), 'utf8')
        await handle.sync()
      } finally {
        await handle.close()
      }
      await fs.rename(temp, this.path)
    } catch (error) {
      await fs.rm(temp, { force: true }).catch(() => undefined)
      throw storeError(
        `binding store ${this.path} cannot be written (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
        error,
      )
    }
  }

  async remove(): Promise<void> {
    await fs.rm(this.path, { force: true })
  }
}

function storeError(message: string, cause?: unknown): SidecarError {
  return new SidecarError('internal_error', message, {
    reason: 'credential_unavailable',
    ...(cause === undefined ? {} : { cause }),
  })
}

function parse(text: string, path: string): StoredBinding {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw storeError(`binding store ${path} is not JSON`)
  }
  const v = value as Partial<StoreFile> | null
  const strings = [
    'selector',
    'clientId',
    'tenantId',
    'tokenEndpoint',
    'identityType',
    'certificatePem',
    'privateKeyPem',
  ] as const
  if (
    !v ||
    typeof v !== 'object' ||
    v.version !== 1 ||
    strings.some((k) => typeof v[k] !== 'string' || v[k] === '')
  ) {
    throw storeError(`binding store ${path} is not a version 1 binding store`)
  }
  if (v.keyProtection !== 'software')
    throw storeError(`binding store ${path} holds an unknown key protection`)
  return {
    selector: v.selector as string,
    clientId: v.clientId as string,
    tenantId: v.tenantId as string,
    tokenEndpoint: v.tokenEndpoint as string,
    identityType: v.identityType as string,
    certificatePem: v.certificatePem as string,
    privateKeyPem: v.privateKeyPem as string,
    keyProtection: v.keyProtection,
  }
}
