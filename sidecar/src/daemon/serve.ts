import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { getRequestListener } from '@hono/node-server'
import { SidecarError } from '../core/errors.ts'
import type { SidecarConfig } from '../config/types.ts'
import { hostnameOf } from '../http/callers/caller-guard.ts'
import { errorResponse } from '../http/error-response.ts'
import { listenOn } from './listen-on.ts'
import { listenOnUnixSocket } from './unix-socket.ts'

export type RequestListener = (req: IncomingMessage, res: ServerResponse) => void

/** The servers a daemon listens with, and where. */
export interface Listening {
  servers: Server[]
  url: string
  /** The ops listener's URL (`listen.ops`), real port included. */
  opsUrl: string | undefined
}

/** An app's `fetch` as a Node request listener that first refuses what the app could not parse. */
export function nodeListener(fetch: (request: Request) => Response | Promise<Response>): RequestListener {
  return refuseUnparseable(getRequestListener(fetch))
}

/**
 * Listens on `listen.host:port`, `listen.socket` and `listen.ops` (the ops app built only when that
 * is configured), each server hardened. `onConnection` sees every TCP connection of the main listener,
 * `onUnixConnection` every connection of the Unix socket.
 */
export async function startServers(
  config: SidecarConfig,
  handlers: {
    main: RequestListener
    ops: () => RequestListener
    onConnection?: ((socket: Socket) => void) | undefined
    /** Every connection of the Unix socket (`listen.socket`). */
    onUnixConnection?: ((socket: Socket) => void) | undefined
  },
): Promise<Listening> {
  const { listen, upstream } = config
  // Host is checked by the caller guard, which answers in the OAuth error shape.
  const serverOptions = { requireHostHeader: false }
  const servers: Server[] = []
  try {
    const tcp = hardened(createServer(serverOptions, handlers.main), upstream.requestDeadlineMs)
    if (handlers.onConnection) tcp.on('connection', handlers.onConnection)
    await listenOn(tcp, { host: listen.host, port: listen.port, backlog: listen.backlog })
    servers.push(tcp)
    const url = urlOf(tcp)
    if (listen.socket) {
      const unix = hardened(createServer(serverOptions, handlers.main), upstream.requestDeadlineMs)
      if (handlers.onUnixConnection) unix.on('connection', handlers.onUnixConnection)
      await listenOnUnixSocket(unix, listen.socket, listen.backlog)
      servers.push(unix)
    }
    let opsUrl: string | undefined
    if (listen.ops) {
      // Health, readiness and metrics only, so it may face the pod network (kubelet, Prometheus).
      const ops = hardened(createServer(serverOptions, handlers.ops()), upstream.requestDeadlineMs)
      await listenOn(ops, { ...listen.ops, backlog: listen.backlog })
      servers.push(ops)
      opsUrl = urlOf(ops)
    }
    return { servers, url, opsUrl }
  } catch (error) {
    // Start failed: release what is already listening, or the process would linger half-started.
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))))
    throw error
  }
}

/**
 * Requests the app cannot even turn into a URL (no or malformed Host, a backslash in the path)
 * would get @hono/node-server's empty 400; answer them here in the OAuth error shape instead.
 */
function refuseUnparseable(
  listener: (req: IncomingMessage, res: ServerResponse) => unknown,
): RequestListener {
  return (req: IncomingMessage, res: ServerResponse) => {
    let error: SidecarError | undefined
    if (hostnameOf(req.headers.host) === undefined) {
      error = new SidecarError('forbidden', 'The Host header is missing or malformed')
    } else if (!req.url?.startsWith('/') || req.url.includes('\\')) {
      error = new SidecarError('invalid_request', 'The request target is not a valid path')
    }
    if (!error) return void listener(req, res)
    const answer = errorResponse(error, randomUUID())
    res.writeHead(answer.status, Object.fromEntries(answer.headers))
    void answer.text().then((body) => res.end(body))
  }
}

/** Bounded request handling: a slow or stalled client cannot hold a connection forever. */
function hardened(server: Server, requestDeadlineMs: number): Server {
  server.requestTimeout = requestDeadlineMs + 10_000
  server.headersTimeout = 10_000
  server.keepAliveTimeout = 5_000
  server.maxHeadersCount = 100
  return server
}

function urlOf(server: Server): string {
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return `http://${host}:${address.port}`
}
