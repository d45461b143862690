import { Agent, request, type Dispatcher } from 'undici'
import { createHash } from 'node:crypto'
import { raceAbort, type WaitLimits } from './abort.ts'
import { defaultEndpoint, resolveEndpoint, routeUrl, type SidecarEndpoint } from './endpoint.ts'
import { SidecarClientError } from './errors.ts'
import { MtlsAgents, type CaOption } from './mtls-agents.ts'
import { parseTokenResponse, type SidecarToken } from './token.ts'
import { TokenCache } from './token-cache.ts'
import {
  createTokenCredential,
  type SidecarTokenCredential,
  type TokenCredentialOptions,
} from './token-credential.ts'
import type { ErrorBodyJson } from './wire.ts'
import type { GetTokenOptions } from './get-token-options.ts'

export type { GetTokenOptions } from './get-token-options.ts'

/**
 * Options of {@link SidecarClient}. Every one is optional; the defaults suit a sidecar on the
 * same host at its default port.
 *
 * @example
 * ```ts
 * const sidecar = new SidecarClient({ endpoint: 'unix:/run/credential-sidecar/sidecar.sock', identity: 'app' })
 * ```
 */
export interface SidecarClientOptions {
  /**
   * `http://127.0.0.1:PORT`, `http://[::1]:PORT`, `http://localhost:PORT` or `unix:/path/to.sock`.
   * Default: env `CREDENTIAL_SIDECAR_ENDPOINT`, else `http://127.0.0.1:7780`.
   */
  endpoint?: string
  /** Identity asked for when a call names none. Default: the sidecar's `defaultIdentity`. */
  identity?: string
  /** Sent as `X-IDENTITY-HEADER`. Default: env `IDENTITY_HEADER`. */
  secret?: string
  /** Accept an endpoint that is not loopback or a Unix socket. Default false. */
  allowRemote?: boolean
  /** Deadline of each call to the sidecar, retry included. Default 30000. */
  timeoutMs?: number
  /** undici Dispatcher for calls to the sidecar (not to resources). Default: undici's global one, or a Unix-socket Agent. */
  dispatcher?: Dispatcher
  /** Environment read for the defaults above. Default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>
  /** Clock (epoch ms) for cache freshness. Default `Date.now`. */
  now?: () => number
}

/**
 * Options of {@link SidecarClient.mtlsAgent}.
 *
 * @example
 * ```ts
 * const agent = await sidecar.mtlsAgent({ scope: 'api://my-api/.default', ca: readFileSync('ca.pem', 'utf8') })
 * ```
 */
export interface MtlsAgentOptions extends GetTokenOptions {
  /** Scope (`<resource>/.default`) or resource URI of the mtls_pop token the agent is for. */
  scope: string
  /** PEM of extra CAs to trust for the resource (added to Node's roots and `NODE_EXTRA_CA_CERTS`). */
  ca?: CaOption
}

/**
 * The platform's `fetch` init (the global `RequestInit`) plus what the token is for. The caller's
 * `Authorization` header is replaced, and the dispatcher is chosen by the SDK (the binding
 * certificate's Agent for mtls_pop).
 *
 * @example
 * ```ts
 * const init: SidecarFetchInit = { scope: 'https://graph.microsoft.com/.default', method: 'GET' }
 * const res = await sidecar.fetch('https://graph.microsoft.com/v1.0/applications', init)
 * ```
 */
export type SidecarFetchInit = Omit<RequestInit, 'dispatcher'> & {
  /** Scope (`<resource>/.default`) or resource URI to get the token for. */
  scope: string
  identity?: string
  forceRefresh?: boolean
  /** PEM of extra CAs to trust for the resource. */
  ca?: CaOption
}

const defaultTimeoutMs = 30_000

/**
 * Client of a local credential-sidecar: tokens cached until the sidecar's `refresh_on`, `fetch`
 * that sets `Authorization` and presents the binding certificate of mtls_pop tokens, undici Agents
 * for that certificate, and an `@azure/core-auth` TokenCredential.
 *
 * @example
 * ```ts
 * import { SidecarClient } from 'credential-sidecar-client'
 *
 * const sidecar = new SidecarClient()
 * const t = await sidecar.getToken('https://graph.microsoft.com/.default', { identity: 'mi' })
 * const res = await sidecar.fetch('https://mtlstb.graph.microsoft.com/v1.0/applications', {
 *   scope: 'https://graph.microsoft.com/.default',
 * })
 * ```
 */
export class SidecarClient {
  readonly #endpoint: SidecarEndpoint
  readonly #identity: string | undefined
  readonly #secret: string | undefined
  readonly #timeoutMs: number
  readonly #dispatcher: Dispatcher | undefined
  readonly #ownedDispatcher: Agent | undefined
  readonly #cache: TokenCache<SidecarToken>
  readonly #agents = new MtlsAgents()

  constructor(options: SidecarClientOptions = {}) {
    const env = options.env ?? process.env
    const endpoint = options.endpoint ?? nonEmpty(env['CREDENTIAL_SIDECAR_ENDPOINT']) ?? defaultEndpoint
    this.#endpoint = resolveEndpoint(endpoint, { allowRemote: options.allowRemote ?? false })
    if (options.identity === '')
      throw new SidecarClientError('invalid_argument', 'identity: must not be empty')
    this.#identity = options.identity
    this.#secret = options.secret ?? nonEmpty(env['IDENTITY_HEADER'])
    const timeoutMs = options.timeoutMs ?? defaultTimeoutMs
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0)
      throw new SidecarClientError(
        'invalid_argument',
        `timeoutMs: expected a positive number of milliseconds, got ${timeoutMs}`,
      )
    this.#timeoutMs = timeoutMs
    if (options.dispatcher) {
      this.#dispatcher = options.dispatcher
    } else if (this.#endpoint.socketPath !== undefined) {
      this.#ownedDispatcher = new Agent({ connect: { socketPath: this.#endpoint.socketPath } })
      this.#dispatcher = this.#ownedDispatcher
    }
    const now = options.now ?? Date.now
    this.#cache = new TokenCache<SidecarToken>({
      now,
      freshUntil: (t) =>
        Math.min(t.refreshAfterTimestamp, t.expiresOnTimestamp, t.bindingCertificate?.notAfter ?? Infinity),
    })
  }

  /**
   * A token for one scope (`<resource>/.default`) or resource URI, from the SDK's cache until the
   * sidecar's `refresh_on`, else from the sidecar (concurrent callers share one request).
   *
   * @param scopes - a scope or resource URI, or an array holding exactly one (as Azure SDKs pass).
   * @example
   * ```ts
   * const t = await sidecar.getToken('https://graph.microsoft.com/.default', { identity: 'mi' })
   * console.log(t.tokenType, new Date(t.expiresOnTimestamp))
   * ```
   */
  async getToken(scopes: string | readonly string[], options: GetTokenOptions = {}): Promise<SidecarToken> {
    const target = singleScope(scopes)
    const identity = options.identity ?? this.#identity
    if (identity === '') throw new SidecarClientError('invalid_argument', 'identity: must not be empty')
    // The sidecar tells a scope from a resource by the `/.default` suffix, and so does the SDK.
    const query: Record<string, string> = target.endsWith('/.default')
      ? { scope: target }
      : { resource: target }
    if (identity !== undefined) query['identity'] = identity
    const key = new URLSearchParams(query).toString()
    const limits = this.#waitLimits(options)
    if (options.claims !== undefined && options.claims !== '') {
      // Name the refused token by its hash: if the sidecar already replaced it (another caller's
      // challenge), it answers with the new one instead of asking upstream again.
      const refused = this.#cache.peek(key)
      const caeQuery: Record<string, string> = { ...query, claims: options.claims }
      if (refused)
        caeQuery['token_sha256_to_refresh'] = createHash('sha256').update(refused.token).digest('hex')
      return raceAbort(
        this.#cache.reload(key, () => this.#requestToken(caeQuery)),
        limits,
      )
    }
    const token = this.#cache.get(key, () => this.#requestToken(query), options.forceRefresh ?? false)
    return raceAbort(token, limits)
  }

  /**
   * `fetch` with the token for `init.scope`: sets `Authorization: <token_type> <token>` and, for an
   * mtls_pop token, sends the request over an Agent that presents the binding certificate. Fails
   * closed: an mtls_pop token is never sent without its certificate, nor as Bearer.
   *
   * @returns the platform's `Response` (the global `fetch` is called, with the SDK's undici Agent as
   * its `dispatcher`).
   * @example
   * ```ts
   * const res = await sidecar.fetch('https://mtlstb.graph.microsoft.com/v1.0/applications', {
   *   scope: 'https://graph.microsoft.com/.default',
   *   headers: { accept: 'application/json' },
   * })
   * console.log(res.status, await res.json())
   * ```
   */
  async fetch(input: string | URL, init: SidecarFetchInit): Promise<Response> {
    const { scope, identity, forceRefresh, ca, ...requestInit } = init
    const token = await this.getToken(scope, {
      ...(identity === undefined ? {} : { identity }),
      ...(forceRefresh === undefined ? {} : { forceRefresh }),
      ...(requestInit.signal ? { abortSignal: requestInit.signal } : {}),
    })
    let dispatcher: Dispatcher | undefined
    if (token.tokenType === 'mtls_pop') {
      // A PoP token is bound to a TLS client certificate: over plain HTTP it cannot be presented.
      if (new URL(input).protocol !== 'https:')
        throw new SidecarClientError(
          'invalid_argument',
          'fetch: an mtls_pop token can only be sent over https:',
        )
      dispatcher = this.#agentFor(scope, token, ca)
    } else if (ca !== undefined) {
      dispatcher = this.#agents.trusting(ca)
    }
    const headers = new Headers(requestInit.headers)
    headers.set('authorization', `${token.tokenType} ${token.token}`)
    return fetch(input, {
      ...requestInit,
      headers,
      ...(dispatcher ? { dispatcher: asPlatform(dispatcher) } : {}),
    })
  }

  /**
   * An undici Agent presenting the current binding certificate of the mtls_pop token for `scope`.
   * The same Agent is returned until the certificate rotates; then a new one is built and the old
   * one closed once its requests finish. Send the token yourself (`getToken`) with it.
   *
   * @example
   * ```ts
   * import { request } from 'undici'
   * const scope = 'api://credential-sidecar-demo/.default'
   * const t = await sidecar.getToken(scope)
   * const agent = await sidecar.mtlsAgent({ scope })
   * await request('https://resource.example/api', { dispatcher: agent, headers: { authorization: `mtls_pop ${t.token}` } })
   * ```
   */
  async mtlsAgent(options: MtlsAgentOptions): Promise<Agent> {
    const { scope, ca, ...getTokenOptions } = options
    const token = await this.getToken(scope, getTokenOptions)
    return this.#agentFor(scope, token, ca)
  }

  /**
   * An `@azure/core-auth` TokenCredential for Azure SDK clients. They send Bearer tokens, so it
   * refuses an identity configured for mtls_pop (`bearer_required`).
   *
   * @example
   * ```ts
   * import { SecretClient } from '@azure/keyvault-secrets'
   * const secrets = new SecretClient('https://my-vault.vault.azure.net', sidecar.tokenCredential({ identity: 'mi' }))
   * ```
   */
  tokenCredential(options: TokenCredentialOptions = {}): SidecarTokenCredential {
    return createTokenCredential(this, options)
  }

  /**
   * Forgets cached tokens and closes the SDK's Agents (requests under way finish first).
   *
   * @example
   * ```ts
   * process.once('SIGTERM', () => void sidecar.close())
   * ```
   */
  async close(): Promise<void> {
    this.#cache.clear()
    await Promise.all([this.#agents.close(), this.#ownedDispatcher?.close()])
  }

  #waitLimits(options: GetTokenOptions): WaitLimits {
    const { abortSignal, timeoutMs } = options
    if (timeoutMs === undefined) return { signal: abortSignal }
    if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0)
      throw new SidecarClientError(
        'invalid_argument',
        `timeoutMs: expected a positive number of milliseconds, got ${String(timeoutMs)}`,
      )
    return {
      signal: abortSignal,
      deadline: {
        ms: timeoutMs,
        error: () =>
          new SidecarClientError(
            'timeout',
            `No answer from the sidecar at ${this.#where()} within ${timeoutMs} ms`,
          ),
      },
    }
  }

  #agentFor(scope: string, token: SidecarToken, ca: CaOption | undefined): Agent {
    const identity = token.identity || this.#identity || '(default)'
    if (token.tokenType !== 'mtls_pop' || token.bindingCertificate === undefined) {
      throw new SidecarClientError(
        'pop_requires_binding_certificate',
        token.tokenType === 'mtls_pop'
          ? `The sidecar returned an mtls_pop token for identity "${identity}" without its binding certificate; refusing to send it`
          : `Identity "${identity}" serves Bearer tokens: there is no binding certificate to present (configure protocolScheme: MTLS_POP)`,
      )
    }
    return this.#agents.forBinding(`${identity}\0${scope}`, identity, token.bindingCertificate, ca)
  }

  async #requestToken(query: Record<string, string>): Promise<SidecarToken> {
    const url = routeUrl(this.#endpoint, '/token', query)
    const headers: Record<string, string> = { metadata: 'true' }
    if (this.#secret !== undefined) headers['x-identity-header'] = this.#secret
    const signal = AbortSignal.timeout(this.#timeoutMs)
    for (let attempt = 1; ; attempt++) {
      let status: number
      let text: string
      try {
        const res = await request(url, {
          method: 'GET',
          headers,
          signal,
          ...(this.#dispatcher ? { dispatcher: this.#dispatcher } : {}),
        })
        status = res.statusCode
        text = await res.body.text()
      } catch (error) {
        if (signal.aborted) {
          throw new SidecarClientError(
            'timeout',
            `No answer from the sidecar at ${this.#where()} within ${this.#timeoutMs} ms`,
            {
              cause: error,
            },
          )
        }
        // One retry, for a connection the sidecar (or a restart of it) dropped: GET /token is idempotent.
        if (attempt === 1 && isConnectionError(error)) continue
        throw new SidecarClientError(
          'connection_failed',
          `Cannot reach the sidecar at ${this.#where()}: ${describe(error)}`,
          {
            cause: error,
          },
        )
      }
      return answer(status, text)
    }
  }

  #where(): string {
    return this.#endpoint.socketPath !== undefined
      ? `unix:${this.#endpoint.socketPath}`
      : this.#endpoint.baseUrl.origin
  }
}

/**
 * Node's global fetch (the undici inside Node) takes an undici Dispatcher as `dispatcher`. The SDK's
 * Agents come from the npm undici, whose Agent speaks the same Dispatcher protocol (the packaging
 * test presents a binding certificate through it on Node 22 and 24), but @types/node types the
 * option with its own copy of undici's declarations, which differ in overloads only.
 */
function asPlatform(dispatcher: Dispatcher): NonNullable<RequestInit['dispatcher']> {
  return dispatcher as unknown as NonNullable<RequestInit['dispatcher']>
}

function answer(status: number, text: string): SidecarToken {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw new SidecarClientError(
      'invalid_response',
      `The sidecar answered ${status} with a body that is not JSON`,
      { status },
    )
  }
  if (status === 200) return parseTokenResponse(body)
  const error = body as Partial<ErrorBodyJson> | null
  if (typeof error?.error !== 'string' || error.error === '') {
    throw new SidecarClientError(
      'invalid_response',
      `The sidecar answered ${status} without an OAuth error body`,
      { status },
    )
  }
  const description = typeof error.error_description === 'string' ? error.error_description : undefined
  const correlationId = typeof error.correlation_id === 'string' ? error.correlation_id : undefined
  return throwSidecarError(status, error.error, description, correlationId, error.error_codes)
}

function throwSidecarError(
  status: number,
  code: string,
  description: string | undefined,
  correlationId: string | undefined,
  errorCodes: unknown,
): never {
  // The daemon promises its descriptions carry no token, key or secret, so they are quoted.
  const message =
    `credential-sidecar answered ${status} ${code}` +
    (description ? `: ${description}` : '') +
    (correlationId ? ` (correlation_id ${correlationId})` : '')
  throw new SidecarClientError(code, message, {
    status,
    ...(description === undefined ? {} : { description }),
    ...(correlationId === undefined ? {} : { correlationId }),
    ...(Array.isArray(errorCodes) && errorCodes.every((c) => typeof c === 'number') ? { errorCodes } : {}),
  })
}

function singleScope(scopes: string | readonly string[]): string {
  const list = typeof scopes === 'string' ? [scopes] : scopes
  if (list.length !== 1) {
    throw new SidecarClientError(
      'invalid_argument',
      `scopes: the sidecar serves one resource per token; got ${list.length} scopes`,
    )
  }
  const scope = list[0]
  if (typeof scope !== 'string' || scope.trim() === '')
    throw new SidecarClientError('invalid_argument', 'scopes: expected a non-empty scope or resource URI')
  return scope
}

const connectionErrorCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ENOENT', // a Unix socket not created yet, e.g. while the sidecar restarts
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
])

function isConnectionError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && connectionErrorCodes.has(code)) return true
  }
  return false
}

function describe(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code
  const message = error instanceof Error ? error.message : String(error)
  return typeof code === 'string' && !message.includes(code) ? `${code} ${message}` : message
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value
}
