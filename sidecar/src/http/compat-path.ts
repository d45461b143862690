import { Hono } from 'hono'

/** Hono's own path extraction (percent-decoding rules included), taken from a default instance. */
const honoGetPath = new Hono().getPath

/**
 * The request path as routed. msal-node and msal4j join an endpoint that ends in `/`
 * (`AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:7780/`) with a path that starts with one,
 * and ask for `//metadata/identity/oauth2/token` or `//msi/token`; real IMDS and App Service answer
 * those, so the compat routes do too. Only those two prefixes are collapsed: any other `//` path
 * stays unmatched.
 */
export function routedPath(request: Request): string {
  const path = honoGetPath(request)
  if (path.startsWith('//metadata/identity/') || path === '//msi/token' || path.startsWith('//msi/token/'))
    return path.slice(1)
  return path
}
