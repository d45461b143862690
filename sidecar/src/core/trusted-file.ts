import { closeSync, constants, fstatSync, openSync, readFileSync, type Stats } from 'node:fs'
import { open } from 'node:fs/promises'

/**
 * Opened without blocking: a FIFO (or a device) at the path would otherwise block `open` until a
 * writer appears, and a read of it until the writer sends; O_NONBLOCK makes `open` return at once,
 * and the descriptor's own stat (not the path's, which may change in between) decides.
 */
const openFlags = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY

/** A file read after its checks passed, with the stat those checks were made on. */
export interface TrustedRead {
  bytes: Buffer
  stats: Stats
}

/**
 * Thrown when a file is present but may not be trusted (contract §2: a regular file, a symlink to
 * one being fine, owned by the daemon's uid or root, not writable by group or others). `reason`
 * completes "PATH …".
 */
export class UntrustedFileError extends Error {
  readonly reason: string
  constructor(path: string, reason: string) {
    super(`${path} ${reason}`)
    this.name = 'UntrustedFileError'
    this.reason = reason
  }
}

/** Why a file with these stats may not be trusted by a process of uid `ownUid`, or undefined. */
export function untrustedReason(
  stats: Stats,
  ownUid: number | undefined = process.getuid?.(),
): string | undefined {
  const irregular = regularFile(stats)
  if (irregular !== undefined) return irregular
  if (ownUid !== undefined && stats.uid !== ownUid && stats.uid !== 0)
    return `is owned by uid ${stats.uid}, neither the sidecar's uid (${ownUid}) nor root; it is refused`
  if ((stats.mode & 0o022) !== 0)
    return `is writable by ${(stats.mode & 0o020) !== 0 ? 'its group' : 'others'} (mode ${modeOf(stats)}); it is refused`
  return undefined
}

/** Whether users other than the owner and group may read it (a secret should not be). */
export function readableByOthers(stats: Stats): boolean {
  return (stats.mode & 0o004) !== 0
}

/** `0644` */
export function modeOf(stats: Stats): string {
  return `0${(stats.mode & 0o777).toString(8)}`
}

/** What a read demands of the file; returns why it is refused, or undefined. */
export type FileRule = (stats: Stats) => string | undefined

/** Only a regular file (a symlink to one is fine): never a FIFO, device or directory. */
export const regularFile: FileRule = (stats) =>
  stats.isFile() ? undefined : `is not a regular file (${kindOf(stats)}); it is refused`

/** Contract §2's checks for a file the daemon trusts, as the current process's uid. */
export const trustedFile: FileRule = (stats) => untrustedReason(stats)

/**
 * Reads `path` when `check` passes, never blocking on a FIFO. For start-up (synchronous).
 *
 * @throws the errno error when it cannot be opened (ENOENT, EACCES), {@link UntrustedFileError}
 *   when `check` refuses it.
 */
export function readCheckedFileSync(path: string, check: FileRule): TrustedRead {
  const fd = openSync(path, openFlags)
  try {
    const stats = fstatSync(fd)
    const reason = check(stats)
    if (reason !== undefined) throw new UntrustedFileError(path, reason)
    return { bytes: readFileSync(fd), stats }
  } finally {
    closeSync(fd)
  }
}

/** {@link readCheckedFileSync} off the event loop, for checks on the request path. */
export async function readCheckedFile(path: string, check: FileRule): Promise<TrustedRead> {
  const handle = await open(path, openFlags)
  try {
    const stats = await handle.stat()
    const reason = check(stats)
    if (reason !== undefined) throw new UntrustedFileError(path, reason)
    return { bytes: await handle.readFile(), stats }
  } finally {
    await handle.close()
  }
}

/** "PATH is owned by uid …" (the trust check's words) or "cannot read PATH (ENOENT)"; never content. */
export function describeFileProblem(path: string, error: unknown): string {
  if (error instanceof UntrustedFileError) return error.message
  const code = (error as { code?: unknown } | undefined)?.code
  return `cannot read ${path} (${typeof code === 'string' ? code : 'error'})`
}

function kindOf(stats: Stats): string {
  if (stats.isFIFO()) return 'a FIFO'
  if (stats.isDirectory()) return 'a directory'
  if (stats.isSocket()) return 'a socket'
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return 'a device'
  return 'not a file'
}
