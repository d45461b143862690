import { isIP } from 'node:net'

/** 127.0.0.0/8, ::1 and localhost: the addresses only local processes can reach. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
  const lower = bare.toLowerCase()
  if (lower === 'localhost') return true
  if (isIP(bare) === 4) return bare.startsWith('127.')
  if (isIP(bare) === 6)
    return lower === '::1' || lower === '0:0:0:0:0:0:0:1' || lower.startsWith('::ffff:127.')
  return false
}

export interface UrlRules {
  /** Only scheme, host and port: a path would be silently combined with what the daemon appends. */
  originOnly?: boolean
  /** https only, except http for loopback hosts (local emulators and test servers). */
  httpsUnlessLoopback?: boolean
}

/** Why `value` is not an acceptable URL, or undefined when it is. Never echoes the value (it may carry credentials). */
export function urlProblem(value: string, rules: UrlRules = {}): string | undefined {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return 'expected an absolute http(s) URL'
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'expected an absolute http(s) URL'
  if (rules.httpsUnlessLoopback && url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    return 'expected an https URL (http is allowed only for loopback hosts)'
  }
  if (url.username !== '' || url.password !== '') return 'a URL must not carry a user name or password'
  if (url.search !== '' || value.includes('?')) return 'a URL must not have a query string'
  if (url.hash !== '' || value.includes('#')) return 'a URL must not have a fragment'
  if (rules.originOnly && url.pathname !== '/') {
    return 'expected only scheme, host and port (no path), e.g. https://login.microsoftonline.com'
  }
  return undefined
}

/** Trailing slashes dropped, so `${base}/path` is always well formed. */
export function normalizeUrl(value: string): string {
  return value.replace(/\/+$/, '')
}
