import { createServer, type Server } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SystemClock, type Clock } from '../../core/clock.ts'
import type { Logger } from '../../core/log.ts'
import { listenOn } from '../../daemon/listen-on.ts'
import type { InjectOptions } from '../inject/options.ts'
import { WebhookMetrics } from './metrics.ts'
import { malformed, review, type ReviewOutcome } from './review.ts'
import { TlsFiles } from './tls-files.ts'

export interface WebhookOptions {
  host: string
  port: number
  tlsCert: string
  tlsKey: string
  /** inject's options, before each pod's annotations override them. */
  defaults: InjectOptions
  logger: Logger
  clock?: Clock
  /** How often the certificate and key files are checked for a change (default 1000 ms). */
  reloadIntervalMs?: number
  /** The largest AdmissionReview read (default 3 MiB, kube-apiserver's own request limit). */
  maxBodyBytes?: number
  /** The whole request must arrive within this (default 10 s, the longest webhook timeout). */
  requestTimeoutMs?: number
}

const defaultMaxBodyBytes = 3 * 1024 * 1024

/**
 * The mutating admission webhook's HTTPS server: `POST /mutate` answers AdmissionReviews,
 * `GET /healthz`, `/readyz` and `/metrics` serve the kubelet and Prometheus.
 */
export class WebhookServer {
  readonly url: string
  readonly metrics: WebhookMetrics
  readonly #server: Server
  readonly #tls: TlsFiles
  #ready = true

  private constructor(server: Server, tls: TlsFiles, metrics: WebhookMetrics, url: string) {
    this.#server = server
    this.#tls = tls
    this.metrics = metrics
    this.url = url
  }

  /** Reads the certificate (throws when it cannot be used), listens, and logs the real URL. */
  static async start(options: WebhookOptions): Promise<WebhookServer> {
    const clock = options.clock ?? new SystemClock()
    const { logger } = options
    const tls = new TlsFiles({ cert: options.tlsCert, key: options.tlsKey }, { clock, logger })
    const pair = await tls.load()
    const metrics = new WebhookMetrics()
    const maxBodyBytes = options.maxBodyBytes ?? defaultMaxBodyBytes
    let webhook: WebhookServer | undefined
    const requestTimeoutMs = options.requestTimeoutMs ?? 10_000
    const server = createServer(
      {
        cert: pair.cert,
        key: pair.key,
        minVersion: 'TLSv1.2',
        // A slow or stalled client gets 408 once the whole request has not arrived in time.
        requestTimeout: requestTimeoutMs,
        headersTimeout: requestTimeoutMs,
        connectionsCheckingInterval: Math.min(1000, requestTimeoutMs),
      },
      (request, response) => {
        void handle(request, response).catch((error: unknown) => {
          logger.error({ error: error instanceof Error ? error.message : String(error) }, 'request failed')
          if (!response.headersSent) send(response, 500, { error: 'internal error' })
          else response.destroy()
        })
      },
    )

    async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
      const path = (request.url ?? '/').split('?')[0]
      if (request.method === 'GET' || request.method === 'HEAD') {
        if (path === '/healthz') return send(response, 200, { status: 'ok' })
        if (path === '/readyz')
          return webhook?.ready
            ? send(response, 200, { status: 'ready' })
            : send(response, 503, { status: 'draining' })
        if (path === '/metrics') {
          const text = await metrics.registry.metrics()
          response.writeHead(200, { 'content-type': metrics.registry.contentType })
          return void response.end(text)
        }
      }
      if (path !== '/mutate') return send(response, 404, { error: 'not found' })
      if (request.method !== 'POST') {
        response.setHeader('allow', 'POST')
        return send(response, 405, { error: 'POST an AdmissionReview' })
      }
      const started = performance.now()
      const outcome = await answer(request)
      send(response, outcome.status, outcome.body, outcome.status === 413 ? { connection: 'close' } : {})
      const seconds = (performance.now() - started) / 1000
      metrics.observe(outcome.decision, seconds)
      const uid = (outcome.body['response'] as { uid?: string } | undefined)?.uid
      logger.info(
        {
          uid: uid || undefined,
          namespace: outcome.namespace,
          pod: outcome.pod,
          decision: outcome.decision,
          reason: outcome.reason,
          durationMs: Math.round(seconds * 1e6) / 1e3,
        },
        'review',
      )
    }

    async function answer(request: IncomingMessage): Promise<ReviewOutcome & { status: number }> {
      const body = await readBody(request, maxBodyBytes)
      if (body === undefined) return tooLarge(maxBodyBytes)
      let parsed: unknown
      try {
        parsed = JSON.parse(body.toString('utf8'))
      } catch {
        return malformed(undefined, 'the body is not JSON')
      }
      return review(parsed, options.defaults)
    }

    await listenOn(server as unknown as import('node:http').Server, {
      host: options.host,
      port: options.port,
    })
    const address = server.address() as AddressInfo
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
    webhook = new WebhookServer(server, tls, metrics, `https://${host}:${address.port}`)
    tls.watch(options.reloadIntervalMs ?? 1000, (next) =>
      server.setSecureContext({ cert: next.cert, key: next.key, minVersion: 'TLSv1.2' }),
    )
    logger.info({ url: webhook.url, notAfter: pair.notAfter, image: options.defaults.image }, 'listening')
    return webhook
  }

  get ready(): boolean {
    return this.#ready
  }

  /**
   * Readiness fails at once; requests keep being answered for `drainDelayMs` (the Service takes
   * the endpoint out meanwhile), then the listener closes and in-flight requests finish, bounded
   * by `graceMs`.
   */
  async close(options: { drainDelayMs?: number; graceMs?: number } = {}): Promise<void> {
    this.#ready = false
    this.#tls.close()
    if (options.drainDelayMs) await new Promise((resolve) => setTimeout(resolve, options.drainDelayMs))
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()))
    this.#server.closeIdleConnections()
    const timer = setTimeout(() => this.#server.closeAllConnections(), options.graceMs ?? 10_000)
    await closed
    clearTimeout(timer)
  }
}

/**
 * The request body, or undefined once it is larger than `limit` (declared or counted): the rest is
 * read and dropped, not kept, and the answer closes the connection.
 */
function readBody(request: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    if (Number(request.headers['content-length']) > limit) {
      request.resume()
      return resolve(undefined)
    }
    const chunks: Buffer[] = []
    let size = 0
    let over = false
    request.on('data', (chunk: Buffer) => {
      if (over) return
      size += chunk.length
      if (size <= limit) return void chunks.push(chunk)
      over = true
      chunks.length = 0
      resolve(undefined)
    })
    request.on('end', () => {
      if (!over) resolve(Buffer.concat(chunks))
    })
    request.on('error', reject)
  })
}

function tooLarge(limit: number): ReviewOutcome & { status: number } {
  return { ...malformed(undefined, `the AdmissionReview is larger than ${limit} bytes`), status: 413 }
}

function send(
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body)
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  })
  response.end(text)
}
