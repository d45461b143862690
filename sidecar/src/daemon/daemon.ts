import type { RequestListener, Server } from 'node:http'
import { configWarnings } from '../config/warnings.ts'
import type { Runtime } from '../core/runtime.ts'
import { createApp } from '../http/app.ts'
import { fastLane, type FastLaneStatus } from '../http/fast-lane.ts'
import type { SocketTable } from '../http/callers/socket-table.ts'
import type { Readiness } from '../http/readiness.ts'
import type { TokenService } from '../tokens/token-service.ts'
import { buildCore, buildSurface, type CoreOptions } from './compose.ts'
import { drainServers } from './drain.ts'
import { nodeListener, startServers } from './serve.ts'
import { warmUp } from './warm-up.ts'

export interface DaemonOptions extends CoreOptions {
  /** Where callers.allow reads connection owners from; the real /proc when absent. */
  socketTable?: SocketTable
}

/**
 * The composition root: builds every component from the config (`compose.ts`), serves the app on
 * the configured address and optional Unix socket (`serve.ts`), warms identities (`warm-up.ts`),
 * and shuts down gracefully (`drain.ts`).
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
  /**
   * The hono app as a node listener: the door the fast lane hands every request it does not answer.
   * Tests serve it on a port of their own to hold both doors' answers side by side.
   */
  readonly honoListener: RequestListener
  readonly #servers: Server[]
  /** Ends the surface (the callers.allow worker) and the core, once nothing listens. */
  readonly #close: () => Promise<void>
  readonly #warmStop = new AbortController()
  #shutdown: Promise<void> | undefined

  private constructor(init: {
    url: string
    opsUrl: string | undefined
    runtime: Runtime
    tokens: TokenService
    readiness: Readiness
    fastLane: FastLaneStatus
    honoListener: RequestListener
    servers: Server[]
    close: () => Promise<void>
  }) {
    this.url = init.url
    this.opsUrl = init.opsUrl
    this.runtime = init.runtime
    this.tokens = init.tokens
    this.readiness = init.readiness
    this.fastLane = init.fastLane
    this.honoListener = init.honoListener
    this.#servers = init.servers
    this.#close = init.close
  }

  static async start(options: DaemonOptions): Promise<Daemon> {
    const { config } = options
    const core = await buildCore(options)
    const { runtime, identities, tokens } = core
    for (const warning of configWarnings(config)) runtime.logger.warn({ warning }, 'config warning')
    const surface = buildSurface(config, core, options.socketTable)
    const { readiness } = surface
    const app = createApp(surface.app)

    for (const identity of identities.values()) identity.start()
    // Cache hits are answered by the fast lane; everything else goes to the hono app.
    const honoListener = nodeListener(app.fetch)
    const lane = fastLane({ runtime, tokens, readiness, callers: surface.app.callers }, honoListener)
    let listening
    try {
      listening = await startServers(config, {
        main: lane.listener,
        ops: () => nodeListener(createApp({ ...surface.app, surface: 'ops' }).fetch),
        // callers.allow: the caller's uid is read once per connection, before any request on it.
        onConnection: surface.peers?.remember,
        onUnixConnection: surface.peers?.rememberUnix,
      })
    } catch (error) {
      // Nothing listens: stop the identities' timers and connections too, or they would linger.
      await surface.close()
      await core.close()
      throw error
    }
    const { servers, url, opsUrl } = listening
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
      honoListener,
      servers,
      close: async () => {
        await surface.close()
        await core.close()
      },
    })
    warmUp({
      runtime,
      tokens,
      readiness,
      identities: config.identities.values(),
      signal: daemon.#warmStop.signal,
    })
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
    await drainServers(this.#servers, {
      readiness: this.readiness,
      logger,
      graceMs,
      // Requests still waiting on upstream when the grace runs out answer 503 shutting_down.
      abortInFlight: () => this.tokens.close(),
    })
    await this.#close()
    logger.info('stopped')
  }
}
