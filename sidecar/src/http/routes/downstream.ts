import type { IncomingMessage } from 'node:http'
import { Hono, type Context, type MiddlewareHandler } from 'hono'
import { downstreamTarget, splitDownstreamTarget } from '../../downstream/target.ts'
import type { DownstreamProxy } from '../../downstream/proxy.ts'
import type { CallerAccess } from '../callers/caller-access.ts'

export interface DownstreamRoutesDeps {
  proxy: DownstreamProxy
  /** The token-route caller guard (Metadata: true, Host, X-Forwarded-For, secret). */
  guard: MiddlewareHandler
  /** `callers.allow`: the api's identity must be one the caller may use. */
  access: CallerAccess
}

/** What @hono/node-server passes as `c.env`; absent when the app is called in process. */
type NodeBindings = { incoming?: IncomingMessage }

/** ANY /downstream/{api}/{path…}: proxy mode (contract §3). */
export function downstreamRoutes(deps: DownstreamRoutesDeps): Hono<{ Bindings: NodeBindings }> {
  const app = new Hono<{ Bindings: NodeBindings }>()
  app.use('/downstream/*', deps.guard)

  const forward = async (c: Context<{ Bindings: NodeBindings }>) => {
    const { api: name, path, query } = splitDownstreamTarget(rawTarget(c))
    const api = deps.proxy.api(name)
    deps.access.authorize(c, api.identity)
    return deps.proxy.forward(api, downstreamTarget(api.baseUrl, path, query), c.req.raw)
  }
  app.all('/downstream/:api', forward)
  app.all('/downstream/:api/*', forward)
  return app
}

/**
 * The request target exactly as the caller sent it. `c.req.url` has been through WHATWG URL
 * parsing, which resolves `..` and `%2e%2e` segments: checking that would let a traversal attempt
 * through as an innocent-looking path instead of refusing it.
 */
function rawTarget(c: Context<{ Bindings: NodeBindings }>): string {
  const raw = c.env?.incoming?.url
  if (raw !== undefined) return raw
  const url = new URL(c.req.url)
  return `${url.pathname}${url.search}`
}
