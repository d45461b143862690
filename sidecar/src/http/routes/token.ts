import { Hono } from 'hono'
import type { TokenService } from '../../tokens/token-service.ts'
import { singleQuery, credentialResponseJson } from '../wire/responses.ts'
import type { CallerAccess } from '../callers/caller-access.ts'

export interface CredentialRouteDeps {
  tokens: TokenService
  exposePrivateKey: boolean
  access: CallerAccess
}

/** GET /credential: the sidecar's own credential route (contract §3). GET /token is in `http/token-routes.ts`. */
export function credentialRoute(deps: CredentialRouteDeps): Hono {
  const app = new Hono()
  app.get('/credential', async (c) => {
    const identity = deps.tokens.identity(singleQuery(c, 'identity'))
    deps.access.authorize(c, identity.name)
    const bundle = await deps.tokens.withDeadline(identity.credentialBundle(AbortSignal.timeout(60_000)))
    return c.json(credentialResponseJson(bundle, deps.exposePrivateKey))
  })
  return app
}
