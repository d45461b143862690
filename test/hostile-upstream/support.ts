import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'
import type { Clock } from '../../sidecar/src/core/clock.ts'
import type { Daemon } from '../../sidecar/src/daemon/daemon.ts'
import type { LogCapture } from '../support/runtime.ts'
import { startDaemon } from '../support/stack.ts'

/** What a hostile server saw: each request, and how each connection ended. */
export interface Seen {
  /** Requests per path (query excluded). */
  count(path: string): number
  /** Connections the client closed before the answer was complete. */
  abortedAnswers: number
  /** Bytes the server managed to write in answers the client cut off. */
  bytesWrittenBeforeAbort: number[]
}

export type Handler = (req: IncomingMessage, res: ServerResponse, call: number) => void | Promise<void>

/**
 * A plain-HTTP server on 127.0.0.1:0 that answers every request with `handler` (the n-th call to a
 * path gets `call` = n, from 1): an IMDS that misbehaves however a test needs. Closed after the test.
 */
export async function hostileServer(
  t: TestContext,
  handler: Handler,
): Promise<{ url: string; seen: Seen; server: Server }> {
  const counts = new Map<string, number>()
  const seen: Seen = {
    count: (path) => counts.get(path) ?? 0,
    abortedAnswers: 0,
    bytesWrittenBeforeAbort: [],
  }
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    const call = (counts.get(path) ?? 0) + 1
    counts.set(path, call)
    res.on('close', () => {
      if (!res.writableFinished) {
        seen.abortedAnswers++
        seen.bytesWrittenBeforeAbort.push(res.socket?.bytesWritten ?? -1)
      }
    })
    Promise.resolve(handler(req, res, call)).catch(() => res.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  )
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, server }
}

/** An IMDS-shaped JSON answer (with the `Server: IMDS/…` header IMDS v2 clients check). */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', server: 'IMDS/150.870.65.1854' })
  res.end(text)
}

/** Writes `chunk` every `intervalMs` until the client goes away or `maxBytes` are out. */
export function drip(
  res: ServerResponse,
  options: { chunk: string; intervalMs: number; maxBytes?: number },
): void {
  res.writeHead(200, { 'content-type': 'application/json', server: 'IMDS/150.870.65.1854' })
  let written = 0
  const timer = setInterval(() => {
    if (res.destroyed || written >= (options.maxBytes ?? Infinity)) {
      clearInterval(timer)
      if (!res.destroyed) res.end()
      return
    }
    written += options.chunk.length
    res.write(options.chunk)
  }, options.intervalMs)
  res.on('close', () => clearInterval(timer))
}

/** Streams up to `totalBytes` of JSON-ish filler as fast as the client reads, stopping when it goes away. */
export function flood(res: ServerResponse, totalBytes: number, headers: Record<string, string> = {}): void {
  res.writeHead(200, { 'content-type': 'application/json', server: 'IMDS/150.870.65.1854', ...headers })
  const chunk = Buffer.alloc(64 * 1024, 0x20)
  let written = 0
  const pump = () => {
    while (!res.destroyed && written < totalBytes) {
      written += chunk.length
      if (!res.write(chunk)) return void res.once('drain', pump)
    }
    if (!res.destroyed) res.end()
  }
  res.write('{"access_token":"')
  pump()
}

export interface HostileDaemon {
  url: string
  logs: LogCapture
  daemon: Daemon
  get(path: string): Promise<{ status: number; body: Record<string, any>; ms: number }>
}

/**
 * The daemon, configured by `yaml` (everything but `listen`), on 127.0.0.1:0; shut down after the
 * test. `upstream` lines are the caller's: point `imdsEndpoint`/`authorityHost` at hostile servers.
 */
export async function hostileDaemon(
  t: TestContext,
  yaml: string,
  options: { clock?: Clock } = {},
): Promise<HostileDaemon> {
  const { daemon, logs } = await startDaemon(t, `listen:\n  host: 127.0.0.1\n  port: 0\n${yaml}`, options)
  return {
    url: daemon.url,
    logs,
    daemon,
    async get(path) {
      const started = Date.now()
      const res = await fetch(`${daemon.url}${path}`, { headers: { Metadata: 'true' } })
      const text = await res.text()
      let body: Record<string, any>
      try {
        body = JSON.parse(text) as Record<string, any>
      } catch {
        body = { text }
      }
      return { status: res.status, body, ms: Date.now() - started }
    },
  }
}

/** A Bearer managed identity on IMDS v1 at `imds`, with short upstream bounds. */
export function imdsV1Yaml(imds: string, upstream = '  timeoutMs: 800\n  requestDeadlineMs: 3000\n'): string {
  return `upstream:\n  imdsEndpoint: ${imds}\n${upstream}identities:\n  mi:\n    managedIdentity: {}\n`
}

export const resource = 'https://management.azure.com'
export const tokenPath = `/token?resource=${encodeURIComponent(resource)}`
