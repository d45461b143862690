import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { getRequestListener } from '@hono/node-server'
import { Agent, type Dispatcher } from 'undici'
import { SystemClock, type Clock, type Random } from '../core/clock.ts'
import type { SidecarConfig } from '../config/types.ts'
import { createApp, type CallerPolicy } from '../http/app.ts'
import { fastLane, type FastLaneStatus } from '../http/fast-lane.ts'
import { hostnameOf, localHostPolicy } from '../http/callers/caller-guard.ts'
import { errorResponse } from '../http/error-response.ts'
import { SidecarError } from '../core/errors.ts'
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readiness } from '../http/readiness.ts'
import { AllowListAccess } from '../http/callers/caller-access.ts'
import { PeerUids } from '../http/callers/peer-uids.ts'
import { SocketTable } from '../http/callers/socket-table.ts'
import { DownstreamProxy } from '../downstream/proxy.ts'
import { SecretFile } from '../http/secret-file.ts'
import { createIdentities } from '../identities/create.ts'
import type { Identity } from '../identities/identity.ts'
import { createLogger, type Logger } from '../core/log.ts'
import { Metrics } from '../core/metrics.ts'
import { MtlsAgents, tlsConnectOptions, trustedCas } from '../upstream/tls.ts'
import { listenOnUnixSocket } from './unix-socket.ts'
import type { Runtime } from '../core/runtime.ts'
import { normaliseScope } from '../tokens/scope.ts'
import { TokenCache } from '../tokens/token-cache.ts'
import { TokenService } from '../tokens/token-service.ts'

export interface DaemonOptions {
  config: SidecarConfig
  logger?: Logger
  clock?: Clock
  random?: Random
  /** Outgoing HTTP for IMDS and Entra; default: an undici Agent trusting upstream.caFile too. */
  dispatcher?: Dispatcher
  /** Where callers.allow reads connection owners from; the real /proc when absent. */
  socketTable?: SocketTable
}

/**
 * The composition root: builds every component from the config, serves the app on the configured
 * address (and optional Unix socket), warms identities, and shuts down gracefully.
 */
export class Daemon {
  readonly url: string
  /** The ops listener's URL (`listen.ops`), real port included. */
  readonly opsUrl: string | undefined
  readonly runtime: Runtime
  readonly tokens: TokenService
  readonly readiness: Readiness
  /** How many cache hits the fast lane answered itself (tests prove which path served). */
  readonly fastLane: FastLaneStatus
  readonly #servers: Server[]
  readonly #closeIdentities: () => Promise<void>
  readonly #ownsDispatcher: boolean
  #warmStop = new AbortController()
  #shutdown: Promise<void> | undefined

  private constructor(init: {
    url: string
    opsUrl: string | undefined
    runtime: Runtime
    tokens: TokenService
    readiness: Readiness
    fastLane: FastLaneStatus
    servers: Server[]
    closeIdentities: () => Promise<void>
    ownsDispatcher: boolean
  }) {
    this.url = init.url
    this.opsUrl = init.opsUrl
    this.runtime = init.runtime
    this.tokens = init.tokens
    this.readiness = init.readiness
    this.fastLane = init.fastLane
    this.#servers = init.servers
    this.#closeIdentities = init.closeIdentities
    this.#ownsDispatcher = init.ownsDispatcher
  }

  static async start(options: DaemonOptions): Promise<Daemon> {
    const { config } = options
    const { runtime, identities, tokens, mtlsAgents, closeIdentities } = await buildCore(options)
    const secretFile = config.callers.secretFile ? new SecretFile(config.callers.secretFile) : undefined
    const readiness = new Readiness()
    const downstream = new DownstreamProxy({ runtime, tokens, apis: config.downstreamApis, mtlsAgents })
    const peers = config.callers.allow
      ? new PeerUids(options.socketTable ?? new SocketTable(), runtime.metrics)
      : undefined
    const appCallers: CallerPolicy = {
      requireMetadataHeader: config.callers.requireMetadataHeader,
      exposePrivateKey: config.callers.exposePrivateKey,
      secret: () => secretFile?.current(),
      hostAllowed: localHostPolicy(config.listen.host),
      ...(peers && config.callers.allow
        ? {
            access: new AllowListAccess({
              entries: config.callers.allow,
              peers,
              logger: runtime.logger,
              metrics: runtime.metrics,
              clock: runtime.clock,
            }),
          }
        : {}),
    }
    const appDeps = {
      runtime,
      tokens,
      readiness,
      downstream,
      agentIdSidecar: config.compat.agentIdSidecar,
      callers: appCallers,
    }
    const app = createApp(appDeps)

    for (const identity of identities.values()) identity.start()
    // Cache hits are answered by the fast lane; everything else goes to the hono app.
    const lane = fastLane(
      { runtime, tokens, readiness, callers: appCallers },
      refuseUnparseable(getRequestListener(app.fetch)),
    )
    const listener = lane.listener
    // Host is checked by the caller guard, which answers in the OAuth error shape.
    const serverOptions = { requireHostHeader: false }
    const servers: Server[] = []
    const tcp = hardened(createServer(serverOptions, listener), config.upstream.requestDeadlineMs)
    // callers.allow: the caller's uid is read once per connection, before any request on it.
    if (peers) tcp.on('connection', peers.remember)
    await listenOn(tcp, {
      host: config.listen.host,
      port: config.listen.port,
      backlog: config.listen.backlog,
    })
    servers.push(tcp)
    const url = urlOf(tcp)
    if (config.listen.socket) {
      const unix = hardened(createServer(serverOptions, listener), config.upstream.requestDeadlineMs)
      try {
        await listenOnUnixSocket(unix, config.listen.socket, config.listen.backlog)
      } catch (error) {
        // Start failed: release the TCP port too, or the process would linger half-started.
        await new Promise<void>((resolve) => tcp.close(() => resolve()))
        throw error
      }
      servers.push(unix)
    }
    let opsUrl: string | undefined
    if (config.listen.ops) {
      // Health, readiness and metrics only, so it may face the pod network (kubelet, Prometheus).
      const opsApp = createApp({ ...appDeps, surface: 'ops' })
      const ops = hardened(
        createServer(serverOptions, refuseUnparseable(getRequestListener(opsApp.fetch))),
        config.upstream.requestDeadlineMs,
      )
      await listenOn(ops, { ...config.listen.ops, backlog: config.listen.backlog })
      servers.push(ops)
      opsUrl = urlOf(ops)
    }
    readiness.markListening()
    runtime.logger.info(
      {
        url,
        ...(opsUrl === undefined ? {} : { ops: opsUrl }),
        ...(config.listen.socket ? { socket: config.listen.socket } : {}),
        identities: [...identities.keys()],
      },
      'listening',
    )

    const daemon = new Daemon({
      url,
      opsUrl,
      runtime,
      tokens,
      readiness,
      fastLane: lane.status,
      servers,
      closeIdentities,
      ownsDispatcher: !options.dispatcher,
    })
    daemon.#warm(config)
    return daemon
  }

  /**
   * Graceful shutdown: readiness fails at once, new token requests are refused, in-flight ones
   * finish; after `graceMs` remaining connections are cut. Resolves when everything is closed.
   */
  shutdown(graceMs: number): Promise<void> {
    this.#shutdown ??= this.#doShutdown(graceMs)
    return this.#shutdown
  }

  async #doShutdown(graceMs: number): Promise<void> {
    const { logger } = this.runtime
    this.readiness.markDraining()
    this.#warmStop.abort()
    logger.info({ grace_ms: graceMs }, 'draining')
    // Keep listening briefly so probes see 503 rather than a refused connection, and until
    // in-flight requests finish; the grace period bounds both.
    const deadline = Date.now() + Math.max(0, graceMs - 500)
    const linger = new Promise<void>((resolve) => setTimeout(resolve, Math.min(1000, graceMs / 4)).unref())
    await Promise.race([
      Promise.all([linger, this.readiness.idle()]),
      new Promise<void>((resolve) => setTimeout(resolve, deadline - Date.now()).unref()),
    ])
    const closed = Promise.all(
      this.#servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
    )
    // A keep-alive connection whose last response is still being written is not idle yet: close
    // idle connections again until the servers are closed, rather than wait for the client to drop it.
    const closeIdle = () => {
      for (const s of this.#servers) s.closeIdleConnections()
    }
    closeIdle()
    const sweeper = setInterval(closeIdle, 50)
    void closed.then(() => clearInterval(sweeper))
    const timer = setTimeout(
      () => {
        logger.warn('grace period over; closing remaining connections')
        for (const s of this.#servers) s.closeAllConnections()
      },
      Math.max(0, deadline - Date.now()),
    )
    await closed
    clearTimeout(timer)
    this.tokens.close()
    await this.#closeIdentities()
    if (this.#ownsDispatcher) await this.runtime.dispatcher.close()
    logger.info('stopped')
  }

  /** Warm identities acquire their credential (and warmResource token) with backoff; /readyz waits. */
  #warm(config: SidecarConfig): void {
    const { logger, clock } = this.runtime
    const warmIdentities = [...config.identities.values()].filter((i) => i.warm)
    for (const identityConfig of warmIdentities) this.readiness.warmPending(identityConfig.name, 'starting')
    const announceReady = () => {
      if (this.readiness.ready) logger.info('ready')
    }
    if (warmIdentities.length === 0) return announceReady()
    for (const identityConfig of warmIdentities) {
      const identity = this.tokens.identity(identityConfig.name)
      void (async () => {
        for (let attempt = 0; !this.#warmStop.signal.aborted; attempt++) {
          try {
            await identity.currentBinding(this.#warmStop.signal)
            if (identityConfig.warmResource) {
              await this.tokens.getToken(identity, normaliseScope({ resource: identityConfig.warmResource }))
            }
            this.readiness.warmDone(identity.name)
            logger.info({ identity: identity.name }, 'identity warm')
            return announceReady()
          } catch (error) {
            const reason = error instanceof Error ? error.message : String(error)
            this.readiness.warmPending(identity.name, reason)
            const delay = Math.min(60_000, 1000 * 2 ** attempt)
            logger.warn({ identity: identity.name, reason, retry_in_ms: delay }, 'warming identity failed')
            await clock.sleep(delay, this.#warmStop.signal).catch(() => {})
          }
        }
      })()
    }
  }
}

export interface Core {
  runtime: Runtime
  identities: Map<string, Identity>
  tokens: TokenService
  /** The one mTLS agent cache, shared by the Entra token client and the downstream proxy. */
  mtlsAgents: MtlsAgents
  /** Closes identities and the upstream clients they share (the mTLS agent cache last). */
  closeIdentities(): Promise<void>
}

/** Everything but the HTTP surface: shared by the daemon and `doctor`. */
export async function buildCore(options: DaemonOptions): Promise<Core> {
  const { config } = options
  const extraCaPem = config.upstream.caFile ? [readFileSync(config.upstream.caFile, 'utf8')] : []
  const ca = trustedCas(extraCaPem)
  const runtime: Runtime = {
    clock: options.clock ?? new SystemClock(),
    random: options.random ?? Math.random,
    logger: options.logger ?? createLogger({ level: config.log.level }),
    metrics: new Metrics({ identities: config.identities.keys() }),
    dispatcher: options.dispatcher ?? new Agent(ca ? { connect: tlsConnectOptions(ca) } : {}),
    extraCaPem,
    timeoutMs: config.upstream.timeoutMs,
  }
  const mtlsAgents = new MtlsAgents({ extraCaPem })
  const identitySet = await createIdentities(config, runtime, mtlsAgents)
  const identities = identitySet.identities
  const cache = new TokenCache({
    clock: runtime.clock,
    random: runtime.random,
    logger: runtime.logger,
    metrics: runtime.metrics,
    maxTokens: config.cache.maxTokens,
  })
  const tokens = new TokenService({
    runtime,
    identities,
    defaultIdentity: config.defaultIdentity,
    cache,
    requestDeadlineMs: config.upstream.requestDeadlineMs,
  })
  const closeIdentities = async () => {
    await identitySet.close()
    await mtlsAgents.close()
  }
  return { runtime, identities, tokens, mtlsAgents, closeIdentities }
}

/**
 * Requests the app cannot even turn into a URL (no or malformed Host, a backslash in the path)
 * would get @hono/node-server's empty 400; answer them here in the OAuth error shape instead.
 */
function refuseUnparseable(listener: (req: IncomingMessage, res: ServerResponse) => unknown) {
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

function listenOn(server: Server, where: { host: string; port: number; backlog: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(where, () => {
      server.off('error', reject)
      resolve()
    })
  })
}
