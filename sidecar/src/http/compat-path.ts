import { Hono } from 'hono'

/** Hono's own path extraction (percent-decoding rules included), taken from a default instance. */
const honoGetPath = new Hono().getPath

/** The AgentID container's app-token routes, as this app declares them (contract §3). */
export const agentIdRoutePrefixes = [
  '/AuthorizationHeaderUnauthenticated/',
  '/DownstreamApiUnauthenticated/',
] as const

/**
 * The request path as routed.
 * - msal-node and msal4j join an endpoint that ends in `/`
 *   (`AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:7780/`) with a path that starts with one,
 *   and ask for `//metadata/identity/oauth2/token` or `//msi/token`; real IMDS and App Service
 *   answer those, so the compat routes do too. Only those two prefixes are collapsed: any other
 *   `//` path stays unmatched.
 * - The AgentID container is ASP.NET Core, whose routes match case-insensitively: its clients may
 *   ask for `/authorizationheaderunauthenticated/{api}`. Only the route name is folded; the api
 *   name keeps its case (it is looked up as configured).
 */
export function routedPath(request: Request): string {
  const path = honoGetPath(request)
  if (path.startsWith('//metadata/identity/') || path === '//msi/token' || path.startsWith('//msi/token/'))
    return path.slice(1)
  const lower = path.slice(0, 40).toLowerCase()
  for (const prefix of agentIdRoutePrefixes) {
    if (lower.startsWith(prefix.toLowerCase()) && !path.startsWith(prefix))
      return prefix + path.slice(prefix.length)
  }
  return path
}
