import { Readable } from 'node:stream'
import type { ReadableStream as NodeReadableStream } from 'node:stream/web'
import type { Dispatcher } from 'undici'
import type { DownstreamApiConfig } from '../config/types.ts'
import { SidecarError } from '../core/errors.ts'
import type { Runtime } from '../core/runtime.ts'
import type { MtlsAgents } from '../upstream/tls.ts'
import { loadUndici } from '../upstream/undici.ts'
import { classifyTransportError } from '../upstream/transport-errors.ts'
import { normaliseScope } from '../tokens/scope.ts'
import type { Scope } from '../model/scope.ts'
import type { ServedToken } from '../identities/identity.ts'
import type { TokenService } from '../tokens/token-service.ts'
import { forwardedRequestHeaders, forwardedResponseHeaders } from './headers.ts'

export interface DownstreamProxyOptions {
  runtime: Runtime
  tokens: TokenService
  apis: ReadonlyMap<string, DownstreamApiConfig>
  /** The daemon's mTLS agent cache (shared with the Entra token client), for mtls_pop tokens. */
  mtlsAgents: MtlsAgents
  /** Request bodies up to this size are buffered so a 401 can be retried; larger ones stream once. Default 1 MiB. */
  replayLimitBytes?: number
}

/** A request body: bytes that can be sent again, or a stream that can be sent once. */
type OutgoingBody = { replayable: true; bytes: Buffer | null } | { replayable: false; stream: Readable }

const nullBodyStatuses = new Set([204, 205, 304])

/**
 * Proxy mode (contract §3, ANY /downstream/{api}/{path…}): calls a configured resource with the
 * api's identity token, so the caller never holds the token, and for mtls_pop never the key either.
 * Bodies stream both ways; redirects are passed back, never followed (undici's `request` does not
 * follow them), so a credential-bearing request is never replayed to a host the resource names.
 */
export class DownstreamProxy {
  readonly #runtime: Runtime
  readonly #tokens: TokenService
  readonly #apis: ReadonlyMap<string, DownstreamApiConfig>
  readonly #replayLimit: number
  readonly #mtlsAgents: MtlsAgents

  constructor(options: DownstreamProxyOptions) {
    this.#runtime = options.runtime
    this.#tokens = options.tokens
    this.#apis = options.apis
    this.#mtlsAgents = options.mtlsAgents
    this.#replayLimit = options.replayLimitBytes ?? 1024 * 1024
  }

  /** The configured api named `name`; unknown names are 404, like an unknown route. */
  api(name: string): DownstreamApiConfig {
    const api = this.#apis.get(name)
    if (!api) throw new SidecarError('not_found', `No downstream API named "${name}" is configured`)
    return api
  }

  /**
   * Sends `incoming` to `target` with the api's token. A 401 from the resource gets one retry with
   * a freshly acquired token when the body could be kept for it.
   */
  async forward(api: DownstreamApiConfig, target: URL, incoming: Request): Promise<Response> {
    const identity = this.#tokens.identity(api.identity)
    const scope = apiScope(api)
    const headers = forwardedRequestHeaders(incoming.headers)
    const body = await this.#outgoingBody(incoming)
    if (body.replayable && body.bytes === null) delete headers['content-length']

    let served = await this.#tokens.getToken(identity, scope)
    let res = await this.#send(api, target, incoming, headers, body, served)
    if (res.statusCode === 401 && body.replayable) {
      await res.body.dump()
      this.#runtime.logger.info(
        { api: api.name, identity: identity.name },
        'downstream resource refused the token (401); retrying once with a fresh one',
      )
      identity.refused(served)
      served = await this.#tokens.getToken(identity, scope)
      res = await this.#send(api, target, incoming, headers, body, served)
    }
    return toResponse(incoming.method, res)
  }

  async #send(
    api: DownstreamApiConfig,
    target: URL,
    incoming: Request,
    headers: Record<string, string>,
    body: OutgoingBody,
    served: ServedToken,
  ): Promise<Dispatcher.ResponseData> {
    const { token } = served
    const dispatcher = await this.#dispatcher(served)
    const { request } = await loadUndici()
    // The deadline covers connecting and the response headers; after that, bodyTimeout bounds
    // silence between chunks, so a long download is not cut at timeoutMs.
    const deadline = new AbortController()
    const timer = setTimeout(() => deadline.abort(), this.#runtime.timeoutMs)
    try {
      return await request(target, {
        method: incoming.method as Dispatcher.HttpMethod,
        headers: { ...headers, authorization: `${token.tokenType} ${token.accessToken}` },
        body: body.replayable ? body.bytes : body.stream,
        dispatcher,
        signal: AbortSignal.any([incoming.signal, deadline.signal]),
        headersTimeout: this.#runtime.timeoutMs,
        bodyTimeout: this.#runtime.timeoutMs,
      })
    } catch (error) {
      if (incoming.signal.aborted) throw error // the caller went away; nobody reads the answer
      throw upstreamError(api, error, deadline.signal.aborted)
    } finally {
      clearTimeout(timer)
    }
  }

  /** Bearer tokens go over the shared dispatcher; mtls_pop ones over TLS with their certificate. */
  #dispatcher(served: ServedToken): Promise<Dispatcher> {
    const { token } = served
    if (token.tokenType !== 'mtls_pop') return this.#runtime.dispatcher.get()
    if (!token.binding)
      throw new SidecarError('internal_error', 'mtls_pop token without its binding certificate')
    // A replaced or rejected certificate's agent is evicted (and closed, letting requests already
    // sent on it finish) when its credential calls evictBinding.
    return this.#mtlsAgents.get(token.binding)
  }

  /**
   * Small bodies (known or found to be at most the replay limit) are read into memory so a 401 can
   * be retried; anything larger streams through once, its first bytes included.
   */
  async #outgoingBody(incoming: Request): Promise<OutgoingBody> {
    if (incoming.body === null || incoming.method === 'GET' || incoming.method === 'HEAD') {
      return { replayable: true, bytes: null }
    }
    const declared = Number(incoming.headers.get('content-length') ?? NaN)
    if (declared > this.#replayLimit)
      return { replayable: false, stream: Readable.fromWeb(incoming.body as NodeReadableStream<Uint8Array>) }
    const reader = incoming.body.getReader()
    const chunks: Uint8Array[] = []
    let size = 0
    while (size <= this.#replayLimit) {
      const { done, value } = await reader.read()
      if (done) return { replayable: true, bytes: size === 0 ? null : Buffer.concat(chunks) }
      chunks.push(value)
      size += value.byteLength
    }
    async function* rest(): AsyncGenerator<Uint8Array> {
      yield* chunks
      for (;;) {
        const { done, value } = await reader.read()
        if (done) return
        yield value
      }
    }
    return { replayable: false, stream: Readable.from(rest()) }
  }
}

/** The scope the api's token is for: its first configured scope (`<resource>/.default`). */
export function apiScope(api: DownstreamApiConfig): Scope {
  const first = api.scopes[0] ?? ''
  return first.endsWith('/.default') ? normaliseScope({ scope: first }) : normaliseScope({ resource: first })
}

function toResponse(method: string, res: Dispatcher.ResponseData): Response {
  const headers = forwardedResponseHeaders(res.headers)
  if (res.statusCode < 200 || res.statusCode > 599) {
    void res.body.dump()
    throw new SidecarError(
      'upstream_error',
      `The downstream resource answered with status ${res.statusCode}`,
      {
        reason: 'malformed_response',
      },
    )
  }
  if (method === 'HEAD' || nullBodyStatuses.has(res.statusCode)) {
    void res.body.dump()
    return new Response(null, { status: res.statusCode, headers })
  }
  return new Response(Readable.toWeb(res.body) as ReadableStream<Uint8Array>, {
    status: res.statusCode,
    headers,
  })
}

/** Transport failures: the endpoint is named by api and origin only (the path may carry ids). */
function upstreamError(api: DownstreamApiConfig, error: unknown, deadlinePassed: boolean): SidecarError {
  const classified = classifyTransportError(error, deadlinePassed)
  // A programming error is no upstream failure: it goes on as it is (500 internal_error).
  if (!classified) throw error
  const { reason, code, what } = classified
  const endpoint = new URL(api.baseUrl).origin
  if (reason === 'timeout') {
    return new SidecarError(
      'upstream_timeout',
      `Downstream API "${api.name}" (${endpoint}) did not answer in time`,
      {
        reason,
        upstream: { endpoint },
        cause: error,
      },
    )
  }
  return new SidecarError(
    'upstream_error',
    `Downstream API "${api.name}" (${endpoint}): ${what}${code ? ` (${code})` : ''}`,
    { reason, upstream: { endpoint }, cause: error },
  )
}
