import { Hono, type Context, type MiddlewareHandler } from 'hono'
import type { Clock } from '../core/clock.ts'
import type { TokenService } from '../tokens/token-service.ts'
import type { CallerAccess } from './callers/caller-access.ts'
import { tokenRouteRefusal, type CallerChecks, type TokenRouteRefusal } from './caller-checks.ts'
import { tokenRoutes, type Field, type TokenRoute } from './token-routes.ts'
import { caeFromQuery } from './wire/cae-query.ts'
import { readFormBody } from './wire/form-body.ts'
import { singleQuery } from './wire/responses.ts'

export interface TokenRouteAppDeps {
  tokens: TokenService
  clock: Clock
  callers: CallerChecks
  /** `callers.allow` (every caller when not configured). */
  access: CallerAccess
}

/**
 * The hono door of the token routes: every route of the table (`token-routes.ts`) at each of its
 * paths, its caller check in front, its steps in the table's order. The fast lane (`fast-lane.ts`)
 * is the other door, built from the same table.
 */
export function tokenRoutesApp(deps: TokenRouteAppDeps): Hono {
  const app = new Hono()
  const refusal = tokenRouteRefusal(deps.callers)
  for (const route of tokenRoutes) {
    const guard = routeGuard(deps, refusal, route)
    const serve = (c: Context, field: Field, source: 'query' | 'form') =>
      serveToken(deps, route, c, field, source)
    for (const path of route.paths) {
      app.use(path, guard)
      app.get(path, (c) => serve(c, (name) => singleQuery(c, name), 'query'))
      const form = route.form
      if (form) {
        app.post(path, async (c) => {
          const body = await readFormBody(c.req.raw, form.bodyLimit)
          return serve(c, (name) => body.get(name), 'form')
        })
      }
    }
  }
  return app
}

/** The route's caller check (`caller-checks.ts`), then `callers.allow`'s check of the connection. */
function routeGuard(
  deps: TokenRouteAppDeps,
  refused: TokenRouteRefusal,
  route: TokenRoute,
): MiddlewareHandler {
  return async function tokenRouteGuard(c, next) {
    const refusal = refused(
      route.guard,
      (name) => c.req.header(name),
      () => c.req.query('api-version'),
    )
    if (refusal) throw refusal
    await deps.access.authorizeConnection(c)
    await next()
  }
}

async function serveToken(
  deps: TokenRouteAppDeps,
  route: TokenRoute,
  c: Context,
  field: Field,
  source: 'query' | 'form',
): Promise<Response> {
  const ask = route.read(field, source)
  const identity = route.identity(deps.tokens, ask, () => deps.access.compatIdentity(c))
  deps.access.authorize(c, identity.name)
  const scope = route.scope(ask, field)
  const cae = caeFromQuery(c, route.cae)
  const served = await deps.tokens.getToken(identity, scope, cae)
  return c.json(route.answer(served, ask, deps.clock.now(), deps.callers.exposePrivateKey))
}
