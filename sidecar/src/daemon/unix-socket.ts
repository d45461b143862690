import { chmodSync, linkSync, lstatSync, mkdtempSync, rmdirSync, statSync, unlinkSync } from 'node:fs'
import type { Server } from 'node:http'
import { connect } from 'node:net'
import { basename, dirname, join } from 'node:path'
import { listenOn } from './listen-on.ts'

/** Why the daemon refuses to take a socket path: it never deletes what it did not create. */
export class SocketPathInUseError extends Error {
  override readonly name = 'SocketPathInUseError'
}

/**
 * Listens on the Unix socket `path` with mode 0660, without ever widening access or destroying
 * someone else's file:
 * - a regular file, directory or anything else that is not a socket at `path` → refuse;
 * - a socket another process answers on → refuse (two daemons would split the callers);
 * - a socket nobody answers on (left by a crash) → the only thing that is replaced.
 *
 * There is no moment when the socket is reachable with a wider mode: the server listens inside a
 * fresh 0700 directory next to `path`, the socket is chmodded to 0660 there, then hard-linked to
 * `path` (link fails instead of replacing anything that appeared meanwhile) and the temporary name
 * removed. On close the final name is removed if it is still this server's socket.
 */
export async function listenOnUnixSocket(server: Server, path: string, backlog?: number): Promise<void> {
  await removeStaleSocket(path)
  const privateDir = mkdtempSync(join(dirname(path), `.${basename(path)}.`))
  const temporary = join(privateDir, 's')
  try {
    await listenOn(server, backlog === undefined ? { path: temporary } : { path: temporary, backlog })
    chmodSync(temporary, 0o660)
    try {
      linkSync(temporary, path)
    } catch (error) {
      server.close()
      throw (error as NodeJS.ErrnoException).code === 'EEXIST'
        ? new SocketPathInUseError(`${path} appeared while the sidecar was starting; refusing to replace it`)
        : error
    }
    const inode = statSync(path).ino
    server.once('close', () => {
      try {
        if (lstatSync(path).ino === inode) unlinkSync(path)
      } catch {
        // Already gone, or replaced by someone else: nothing of ours to clean up.
      }
    })
  } finally {
    unlinkQuietly(temporary)
    try {
      rmdirSync(privateDir)
    } catch {
      // Left behind only if something else was put into our 0700 directory.
    }
  }
}

async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean
  try {
    isSocket = lstatSync(path).isSocket()
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return
    throw error
  }
  if (!isSocket) {
    throw new SocketPathInUseError(
      `${path} exists and is not a socket; refusing to delete it (choose another listen.socket or remove it yourself)`,
    )
  }
  if (await answers(path)) {
    throw new SocketPathInUseError(
      `another process is listening on ${path}; refusing to take it over (is another sidecar running?)`,
    )
  }
  unlinkSync(path)
}

/** Whether something accepts connections on the socket; refused (or timed out) means stale. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path })
    const timer = setTimeout(() => {
      socket.destroy()
      // A listener that does not even accept within 2 s is alive but stuck: still not ours to take.
      resolve(true)
    }, 2000)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.destroy()
      resolve(true)
    })
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      if (error.code === 'ECONNREFUSED') resolve(false)
      else reject(new SocketPathInUseError(`cannot probe ${path}: ${error.code ?? error.message}`))
    })
  })
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path)
  } catch {
    // The server may have been closed (and libuv removed the name) on a failed link.
  }
}
