import { Hono } from 'hono'
import { normaliseScope } from '../../tokens/scope.ts'
import type { TokenService } from '../../tokens/token-service.ts'
import type { Clock } from '../../core/clock.ts'
import { caeFromQuery } from '../wire/cae-query.ts'
import { singleQuery, tokenResponseJson, credentialResponseJson } from '../wire/responses.ts'
import type { CallerAccess } from '../callers/caller-access.ts'

export interface NativeRoutesDeps {
  tokens: TokenService
  clock: Clock
  exposePrivateKey: boolean
  access: CallerAccess
}

/** GET /token and GET /credential: the sidecar's own routes (contract §3). */
export function nativeRoutes(deps: NativeRoutesDeps): Hono {
  const app = new Hono()

  app.get('/token', async (c) => {
    const identity = deps.tokens.identity(singleQuery(c, 'identity'))
    deps.access.authorize(c, identity.name)
    const scope = normaliseScope({ resource: singleQuery(c, 'resource'), scope: singleQuery(c, 'scope') })
    const cae = caeFromQuery(c, { claims: true, xmsCc: false })
    const served = await deps.tokens.getToken(identity, scope, cae)
    return c.json(tokenResponseJson(served, deps.clock.now(), deps.exposePrivateKey))
  })

  app.get('/credential', async (c) => {
    const identity = deps.tokens.identity(singleQuery(c, 'identity'))
    deps.access.authorize(c, identity.name)
    const bundle = await deps.tokens.withDeadline(identity.credentialBundle(AbortSignal.timeout(60_000)))
    return c.json(credentialResponseJson(bundle, deps.exposePrivateKey))
  })

  return app
}
