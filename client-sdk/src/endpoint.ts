import { isIP } from 'node:net'
import { SidecarClientError } from './errors.ts'

/** Where the sidecar listens, resolved from an option, the environment or the default. */
export interface SidecarEndpoint {
  /** Base URL requests are built on (`http://localhost` for a Unix socket). */
  baseUrl: URL
  /** Set for `unix:/path/to.sock`: connect there instead of to `baseUrl`'s host. */
  socketPath?: string
  /** True for loopback addresses and Unix sockets. */
  local: boolean
}

/**
 * The endpoint used when neither the option nor `CREDENTIAL_SIDECAR_ENDPOINT` names one.
 *
 * @example
 * ```ts
 * const endpoint = process.env['CREDENTIAL_SIDECAR_ENDPOINT'] ?? defaultEndpoint
 * ```
 */
export const defaultEndpoint = 'http://127.0.0.1:7780'

/**
 * Parses `http(s)://host:port[/base]` or `unix:/path/to.sock` and refuses a non-loopback host
 * unless `allowRemote`: the SDK sends the caller secret and receives tokens and private keys, which
 * must not cross a network by a typo in an environment variable.
 *
 * @example
 * ```ts
 * resolveEndpoint('unix:/run/credential-sidecar/sidecar.sock', { allowRemote: false })
 * // { baseUrl: URL('http://localhost'), socketPath: '/run/credential-sidecar/sidecar.sock', local: true }
 * ```
 */
export function resolveEndpoint(endpoint: string, options: { allowRemote: boolean }): SidecarEndpoint {
  if (endpoint.startsWith('unix:')) {
    const socketPath = endpoint.slice('unix:'.length)
    if (!socketPath.startsWith('/')) {
      throw new SidecarClientError(
        'invalid_endpoint',
        `endpoint: "unix:" must be followed by an absolute socket path, e.g. unix:/run/credential-sidecar/sidecar.sock`,
      )
    }
    return { baseUrl: new URL('http://localhost'), socketPath, local: true }
  }
  let url: URL
  try {
    url = new URL(endpoint)
  } catch (cause) {
    throw new SidecarClientError(
      'invalid_endpoint',
      `endpoint: "${endpoint}" is not a URL; expected http://127.0.0.1:PORT or unix:/path/to.sock`,
      { cause },
    )
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new SidecarClientError(
      'invalid_endpoint',
      `endpoint: protocol ${url.protocol} is not http:, https: or unix:`,
    )
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new SidecarClientError(
      'invalid_endpoint',
      'endpoint: credentials, query and fragment are not allowed',
    )
  }
  const local = isLoopbackHostname(url.hostname)
  if (!local && !options.allowRemote) {
    throw new SidecarClientError(
      'remote_endpoint_refused',
      `endpoint: ${url.host} is not a loopback address (127.0.0.0/8, ::1, localhost); the sidecar serves ` +
        'tokens to local callers only. Pass allowRemote: true if this is really intended',
    )
  }
  return { baseUrl: url, local }
}

/**
 * Loopback means exactly 127.0.0.0/8, ::1 and localhost (not *.localhost, which may not resolve so).
 *
 * @example
 * ```ts
 * isLoopbackHostname('127.0.0.1') // true
 * isLoopbackHostname('[::1]') // true
 * isLoopbackHostname('localhost.example.com') // false
 * ```
 */
export function isLoopbackHostname(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, '')
  if (h === 'localhost' || h === '::1') return true
  return isIP(h) === 4 && h.startsWith('127.')
}

/** `base` + `path`, keeping a base path (`http://host/sidecar` + `/token` → `/sidecar/token`). */
export function routeUrl(endpoint: SidecarEndpoint, path: string, query: Record<string, string>): URL {
  const url = new URL(endpoint.baseUrl)
  url.pathname = `${url.pathname.replace(/\/+$/, '')}${path}`
  for (const [name, value] of Object.entries(query)) url.searchParams.set(name, value)
  return url
}
