import { randomUUID } from 'node:crypto'
import { promises as fs, type Stats } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { SidecarError } from '../core/errors.ts'
import { describeFileProblem, modeOf, readCheckedFile, untrustedReason } from '../core/trusted-file.ts'
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
 * half-written file and the mode is set before any byte is written). On load it is trusted only
 * as contract §2 says: a regular file (a symlink to one is fine), owned by the daemon's uid or root,
 * not writable by group or others, and (a key) not readable by them either. It is opened without
 * blocking and judged on the open descriptor, so a FIFO planted there is refused, never waited on.
 * What the directory allows (who may create, rename or delete files in it) is the operator's part.
 */
export class BindingStore {
  readonly path: string
  /** The config key naming the file, for messages (`identities.mi.bindingStore`). */
  readonly key: string

  constructor(path: string, key = 'bindingStore') {
    this.path = path
    this.key = key
  }

  /** The stored binding; undefined when there is no file. Throws a SidecarError when it is unsafe or unreadable. */
  async load(): Promise<StoredBinding | undefined> {
    let text: string
    try {
      text = (await readCheckedFile(this.path, privateTrustedFile)).bytes.toString('utf8')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw storeError(`${this.key}: ${describeFileProblem(this.path, error)}`, error)
    }
    return parse(text, this.path)
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
        `${this.key}: ${this.path} cannot be written (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
        error,
      )
    }
  }

  async remove(): Promise<void> {
    await fs.rm(this.path, { force: true })
  }
}

/** The trust rules of contract §2, and not readable by group or others: it holds a private key. */
function privateTrustedFile(stats: Stats): string | undefined {
  const untrusted = untrustedReason(stats)
  if (untrusted !== undefined) return untrusted
  if ((stats.mode & 0o077) !== 0)
    return `is readable by group or others (mode ${modeOf(stats)}); it holds a private key and is refused: chmod 600 it or delete it`
  return undefined
}

function storeError(message: string, cause?: unknown): SidecarError {
  return new SidecarError('credential_unavailable', message, cause === undefined ? {} : { cause })
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
