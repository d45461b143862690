import { Worker } from 'node:worker_threads'

/**
 * Runs in the worker: one synchronous pass over a /proc table for a batch of needles, stopping as
 * soon as all are found. Plain JavaScript in a string so it runs the same from the TypeScript
 * sources and from the compiled package. Only complete lines are searched, so a match always
 * carries its whole line.
 */
const workerSource = `
const { parentPort, workerData } = require('node:worker_threads')
const { openSync, readSync, closeSync } = require('node:fs')
// Linux: setpriority on pid 0 is this thread alone; a scan then yields the CPU to the event loop.
try { require('node:os').setPriority(workerData.nice) } catch {}
const buffer = Buffer.allocUnsafe(workerData.chunkBytes)
function scan(path, needles) {
  const found = needles.map(() => null)
  let remaining = needles.length
  const fd = openSync(path, 'r')
  try {
    let carry = ''
    for (;;) {
      const read = readSync(fd, buffer, 0, buffer.length, null)
      const text = carry + buffer.toString('latin1', 0, read)
      const complete = read === 0 ? text.length : text.lastIndexOf('\\n') + 1
      const lines = text.slice(0, complete)
      carry = text.slice(complete)
      for (let i = 0; i < needles.length; i++) {
        if (found[i] !== null) continue
        const at = lines.indexOf(needles[i])
        if (at === -1) continue
        const end = lines.indexOf('\\n', at)
        found[i] = lines.slice(lines.lastIndexOf('\\n', at) + 1, end === -1 ? undefined : end)
        remaining--
      }
      if (remaining === 0 || read === 0) return found
    }
  } finally {
    closeSync(fd)
  }
}
parentPort.on('message', ({ id, path, needles }) => {
  try {
    parentPort.postMessage({ id, lines: scan(path, needles) })
  } catch (error) {
    parentPort.postMessage({ id, error: error.code || String(error) })
  }
})
`

interface Pending {
  resolve: (lines: (string | null)[]) => void
  reject: (error: Error) => void
}

/** The worker ends after this long without work. */
const idleMs = 30_000

/**
 * Scans /proc text tables on a worker thread. The kernel hands /proc/net/tcp out about one page
 * per read(2), and formatting it costs in proportion to every socket of the namespace, so a scan
 * is hundreds of system calls and up to tens of milliseconds: on the main thread it would stall
 * every connection, and through the libuv pool each page would cost an event-loop round trip. The
 * worker starts on first use and ends after `idleMs` (30 s) without work (it never keeps the
 * process up).
 */
export class TableScanner {
  readonly #chunkBytes: number
  readonly #nice: number
  readonly #pending = new Map<number, Pending>()
  #worker: Worker | undefined
  #nextId = 0
  #idleTimer: NodeJS.Timeout | undefined

  /**
   * `nice`: the worker thread's niceness (10): on a busy host its scans yield the CPU to the event
   * loop serving requests, so a burst of lookups slows the lookups, not the callers already known.
   */
  constructor(options: { chunkBytes?: number; nice?: number } = {}) {
    this.#chunkBytes = options.chunkBytes ?? 64 * 1024
    this.#nice = options.nice ?? 10
  }

  /**
   * For each needle, the line of `path` that contains it, or null when none does.
   *
   * @throws an Error whose message is the errno code (ENOENT, EACCES) when the file cannot be read.
   */
  scan(path: string, needles: readonly string[]): Promise<(string | null)[]> {
    clearTimeout(this.#idleTimer)
    const worker = this.#started()
    // Held while a scan is pending, so a lookup is answered even when nothing else keeps the
    // process running; idle, it never keeps the process up (and a 'message' listener would ref it
    // for good, so ref and unref are explicit).
    worker.ref()
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject })
      worker.postMessage({ id, path, needles })
    })
  }

  /** Ends the worker now; a later scan starts a new one. */
  close(): Promise<void> {
    clearTimeout(this.#idleTimer)
    const worker = this.#worker
    this.#worker = undefined
    this.#failAll(new Error('the socket table scanner was closed'))
    return worker ? worker.terminate().then(() => undefined) : Promise.resolve()
  }

  #started(): Worker {
    if (this.#worker) return this.#worker
    const worker = new Worker(workerSource, {
      eval: true,
      workerData: { chunkBytes: this.#chunkBytes, nice: this.#nice },
    })
    worker.on('message', (message: { id: number; lines?: (string | null)[]; error?: string }) => {
      const pending = this.#pending.get(message.id)
      this.#pending.delete(message.id)
      if (message.lines) pending?.resolve(message.lines)
      else pending?.reject(new Error(message.error ?? 'scan failed'))
      if (this.#pending.size === 0) {
        worker.unref()
        this.#idleTimer = setTimeout(() => void this.close(), idleMs).unref()
      }
    })
    const lost = (error: Error) => {
      if (this.#worker !== worker) return
      this.#worker = undefined
      this.#failAll(error)
    }
    worker.on('error', lost)
    worker.on('exit', (code) => lost(new Error(`the socket table scanner stopped (exit ${code})`)))
    this.#worker = worker
    return worker
  }

  #failAll(error: Error): void {
    for (const pending of this.#pending.values()) pending.reject(error)
    this.#pending.clear()
  }
}
