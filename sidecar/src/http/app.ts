import { randomUUID } from 'node:crypto'
import { Hono, type Context } from 'hono'
import { SidecarError } from '../core/errors.ts'
import type { Runtime } from '../core/runtime.ts'
import type { TokenService } from '../tokens/token-service.ts'
import { everyCaller, type CallerAccess } from './callers/caller-access.ts'
import { callerGuard } from './callers/caller-guard.ts'
import { routedPath } from './compat-path.ts'
import { errorResponse } from './error-response.ts'
import type { Readiness } from './readiness.ts'
import { agentIdCompatRoutes } from './routes/agent-id-compat.ts'
import { appServiceCompatRoutes } from './routes/app-service-compat.ts'
import type { DownstreamProxy } from '../downstream/proxy.ts'
import { downstreamRoutes } from './routes/downstream.ts'
import { imdsCompatRoutes } from './routes/imds-compat.ts'
import { nativeRoutes } from './routes/token.ts'

export interface CallerPolicy {
  requireMetadataHeader: boolean
  exposePrivateKey: boolean
  /** Current caller secret (X-IDENTITY-HEADER), or undefined when none is configured. */
  secret: () => string | undefined
  hostAllowed: (hostname: string) => boolean
  /** `callers.allow`; every caller when absent. */
  access?: CallerAccess
}

export interface AppDeps {
  runtime: Runtime
  tokens: TokenService
  readiness: Readiness
  callers: CallerPolicy
  /** Proxy mode (`downstreamApis`); /downstream/* is not served without it. */
  downstream?: DownstreamProxy
  /** `compat.agentIdSidecar`: serve the Entra SDK for AgentID container's app-token routes. */
  agentIdSidecar?: boolean
  /** `ops`: the ops listener's app, /healthz, /readyz and /metrics only (no token route). */
  surface?: 'all' | 'ops'
}

/** Kubelet probes and Prometheus scrapes: every few seconds, so logged at debug, not info. */
const operationsRoutes = new Set(['/healthz', '/readyz', '/metrics'])

type Env = { Variables: { correlationId: string | undefined } }

/**
 * The daemon's HTTP surface, built separately from listening (`daemon/serve.ts` serves it) so route
 * tests can call `app.request()` in process.
 */
export function createApp(deps: AppDeps): Hono<Env> {
  const { runtime, tokens, readiness, callers } = deps
  const app = new Hono<Env>({ getPath: routedPath })

  app.use(async function requestContext(c, next) {
    const started = performance.now()
    readiness.requestStarted()
    try {
      await next()
    } finally {
      readiness.requestFinished()
    }
    // Token answers must never be cached; a proxied resource's answer keeps its own policy.
    if (!c.req.path.startsWith('/downstream/') || !c.res.headers.has('cache-control')) {
      c.res.headers.set('cache-control', 'no-store')
    }
    const route = c.req.routePath === '/*' ? 'unmatched' : c.req.routePath
    runtime.metrics.countRequest(route, c.res.status, (performance.now() - started) / 1000)
    logRequest(runtime, c.req.method, c.req.path, c.res.status, started, c.get('correlationId'), {
      operations: operationsRoutes.has(route),
    })
  })

  app.get('/healthz', (c) => c.json({ status: 'ok' }))
  app.get('/readyz', (c) => c.json(readiness.describe(), readiness.ready ? 200 : 503))
  app.get('/metrics', async (c) => {
    return c.body(await runtime.metrics.render(), 200, {
      'content-type': runtime.metrics.registry.contentType,
    })
  })

  if (deps.surface === 'ops') return withErrorHandling(app, runtime)

  const access = callers.access ?? everyCaller
  const guard = callerGuard({
    requireMetadataHeader: callers.requireMetadataHeader,
    secret: callers.secret,
    hostAllowed: callers.hostAllowed,
    ...(callers.access ? { authorizeCaller: (c: Context) => access.authorizeConnection(c) } : {}),
  })
  const token = new Hono<Env>()
  token.use(async function refuseWhileDraining(_c, next) {
    if (readiness.draining)
      throw new SidecarError('shutting_down', 'The sidecar is shutting down', { retryAfterSeconds: 1 })
    await next()
  })
  token.use('/token', guard)
  token.use('/credential', guard)
  token.route(
    '/',
    nativeRoutes({ tokens, clock: runtime.clock, exposePrivateKey: callers.exposePrivateKey, access }),
  )
  token.route('/', imdsCompatRoutes({ tokens, clock: runtime.clock, guard, access }))
  token.route(
    '/',
    appServiceCompatRoutes({ tokens, secret: callers.secret, hostAllowed: callers.hostAllowed, access }),
  )
  if (deps.downstream) token.route('/', downstreamRoutes({ proxy: deps.downstream, guard, access }))
  if (deps.agentIdSidecar) {
    // No Metadata demand (that container's clients never send it: the SSRF trade-off the README
    // states); Host, forwarding headers, the secret and callers.allow are still checked.
    const agentIdGuard = callerGuard({
      requireMetadataHeader: false,
      secret: callers.secret,
      hostAllowed: callers.hostAllowed,
      ...(callers.access ? { authorizeCaller: (c: Context) => access.authorizeConnection(c) } : {}),
    })
    token.route(
      '/',
      agentIdCompatRoutes({
        tokens,
        proxy: deps.downstream,
        guard: agentIdGuard,
        exposePrivateKey: callers.exposePrivateKey,
        access,
      }),
    )
  }
  app.route('/', token)
  return withErrorHandling(app, runtime)
}

/** Unknown routes and every error answer in the OAuth error shape. */
function withErrorHandling(app: Hono<Env>, runtime: Runtime): Hono<Env> {
  app.notFound(() => {
    throw new SidecarError('not_found', 'No such route')
  })
  app.onError((error, c) => {
    // Created only here: an error answer is what carries a correlation id.
    const correlationId = c.get('correlationId') ?? randomUUID()
    c.set('correlationId', correlationId)
    logError(runtime, error, correlationId)
    return errorResponse(error, correlationId)
  })
  return app
}

/**
 * The access log line. Successful answers are logged at debug only: at info, one synchronous JSON
 * line per cache hit was the largest single cost of a cached /token. Failures are logged at info or
 * above by `logError` (with their correlation id) and here again at info with the status. Probes
 * and scrapes (`operations`) come every few seconds: debug whatever their status.
 */
export function logRequest(
  runtime: Runtime,
  method: string,
  path: string,
  status: number,
  started: number,
  correlationId: string | undefined,
  options: { operations?: boolean } = {},
): void {
  const level = status >= 400 && !options.operations ? 'info' : 'debug'
  if (!runtime.logger.isLevelEnabled(level)) return
  // Path only: the query names resources, never secrets, but keep lines short and uniform.
  runtime.logger[level](
    {
      method,
      path,
      status,
      ms: Math.round(performance.now() - started),
      ...(correlationId === undefined ? {} : { correlation_id: correlationId }),
    },
    'request',
  )
}

function logError(runtime: Runtime, error: unknown, correlationId: string): void {
  // callers.allow logs its refusals once per connection, rate-limited (caller-access.ts).
  if (
    error instanceof SidecarError &&
    (error.reason === 'caller_not_allowed' || error.reason === 'caller_unknown')
  )
    return
  if (error instanceof SidecarError) {
    const level = error.status >= 500 ? 'warn' : 'info'
    runtime.logger[level](
      {
        correlation_id: correlationId,
        error: error.code,
        reason: error.reason,
        upstream: error.upstream,
        description: error.message,
      },
      'request failed',
    )
  } else {
    // Unknown errors: log the type and message, never the object (it may hold a request or key).
    const e = error instanceof Error ? error : new Error(String(error))
    runtime.logger.error(
      { correlation_id: correlationId, error: e.name, description: e.message, stack: e.stack },
      'internal error',
    )
  }
}
