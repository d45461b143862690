import { randomUUID } from 'node:crypto'
import { Hono, type Context } from 'hono'
import { SidecarError } from '../core/errors.ts'
import type { Runtime } from '../core/runtime.ts'
import type { TokenService } from '../tokens/token-service.ts'
import { everyCaller } from './callers/caller-access.ts'
import { callerGuard } from './callers/caller-guard.ts'
import { agentIdRoutePrefixes, routedPath } from './compat-path.ts'
import { errorResponse, type ErrorDialect } from './error-response.ts'
import { callerGuardOptions, type CallerChecks } from './caller-checks.ts'
import type { Readiness } from './readiness.ts'
import { logRequest } from './request-log.ts'
import { agentIdCompatRoutes } from './routes/agent-id-compat.ts'
import type { DownstreamProxy } from '../downstream/proxy.ts'
import { downstreamRoutes } from './routes/downstream.ts'
import { credentialRoute } from './routes/token.ts'
import { tokenRoutesApp } from './token-route-app.ts'
import { tokenRoutes } from './token-routes.ts'

export interface AppDeps {
  runtime: Runtime
  tokens: TokenService
  readiness: Readiness
  callers: CallerChecks
  /** Proxy mode (`downstreamApis`); /downstream/* is not served without it. */
  downstream?: DownstreamProxy
  /** `compat.agentIdSidecar`: serve the Entra SDK for AgentID container's app-token routes. */
  agentIdSidecar?: boolean
  /** `ops`: the ops listener's app, /healthz, /readyz and /metrics only (no token route). */
  surface?: 'all' | 'ops'
}

/** Kubelet probes and Prometheus scrapes: every few seconds, so logged at debug, not info. */
const operationsRoutes = new Set(['/healthz', '/readyz', '/metrics'])

type Env = { Variables: { correlationId: string | undefined; errorDialect: ErrorDialect | undefined } }

const compatPaths = new Set(tokenRoutes.filter((r) => r.dialect === 'compat').flatMap((r) => r.paths))

/** How a route words its errors (`error-response.ts`): decided by its path, before any check runs. */
function dialectOf(path: string, agentIdSidecar: boolean): ErrorDialect {
  if (compatPaths.has(path)) return 'compat'
  if (agentIdSidecar && agentIdRoutePrefixes.some((prefix) => path.startsWith(prefix))) return 'problem'
  return 'oauth'
}

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
  const authorize = callers.access ? { authorizeCaller: (c: Context) => access.authorizeConnection(c) } : {}
  const guard = callerGuard({ ...callerGuardOptions(callers, 'token'), ...authorize })
  const token = new Hono<Env>()
  const agentIdSidecar = deps.agentIdSidecar ?? false
  token.use(async function routeContext(c, next) {
    c.set('errorDialect', dialectOf(c.req.path, agentIdSidecar))
    // RFC 9112 §6.3: a GET or HEAD carries no body; one that does is answered 400 and the
    // connection closed, so a request smuggled in its body is never read as the next request.
    if ((c.req.method === 'GET' || c.req.method === 'HEAD') && carriesBody(c.req.raw.headers)) {
      throw new SidecarError('invalid_request', `A ${c.req.method} request must not carry a body`, {
        reason: 'request_with_body',
      })
    }
    await next()
  })
  token.use(async function refuseWhileDraining(_c, next) {
    if (readiness.draining)
      throw new SidecarError('shutting_down', 'The sidecar is shutting down', { retryAfterSeconds: 1 })
    await next()
  })
  // The token routes, from the table the fast lane is built from too.
  token.route('/', tokenRoutesApp({ tokens, clock: runtime.clock, callers, access }))
  token.use('/credential', guard)
  token.route('/', credentialRoute({ tokens, exposePrivateKey: callers.exposePrivateKey, access }))
  if (deps.downstream) token.route('/', downstreamRoutes({ proxy: deps.downstream, guard, access }))
  if (agentIdSidecar) {
    // No Metadata demand and no caller secret (that container's clients send neither: the SSRF
    // trade-off the docs state); Host, forwarding headers and callers.allow are still checked.
    const agentIdGuard = callerGuard({ ...callerGuardOptions(callers, 'agent-id'), ...authorize })
    token.route(
      '/',
      agentIdCompatRoutes({
        tokens,
        logger: runtime.logger,
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
    const answer = errorResponse(error, correlationId, c.get('errorDialect'))
    if (error instanceof SidecarError && error.reason === 'request_with_body')
      answer.headers.set('connection', 'close')
    return answer
  })
  return app
}

/** Whether a request announces a body: any Transfer-Encoding, or a Content-Length other than 0. */
export function carriesBody(headers: Headers): boolean {
  if (headers.has('transfer-encoding')) return true
  const length = headers.get('content-length')
  return length !== null && length.trim() !== '0'
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
