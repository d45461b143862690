import { SidecarError } from '../core/errors.ts'

/** A request target under `/downstream/`, split as the caller sent it (still percent-encoded). */
export interface DownstreamRequestTarget {
  api: string
  /** `''` or a path starting with `/`, percent-encoded as received. */
  path: string
  /** The query string without `?`, as received; undefined when there is none. */
  query: string | undefined
}

const prefix = '/downstream/'

/**
 * Splits the raw request target (`IncomingMessage.url`, before any URL parsing: WHATWG URL
 * parsing resolves `..` and `%2e%2e` segments, which would hide the very attempts refused here).
 */
export function splitDownstreamTarget(rawTarget: string): DownstreamRequestTarget {
  if (!rawTarget.startsWith(prefix)) {
    // Absolute-form targets (`GET http://…`) and anything that only reached /downstream/ after
    // dot-segment resolution.
    throw refuse('the request target must be a plain /downstream/{api}/{path} path')
  }
  const queryAt = rawTarget.indexOf('?')
  const pathPart = queryAt === -1 ? rawTarget : rawTarget.slice(0, queryAt)
  const query = queryAt === -1 ? undefined : rawTarget.slice(queryAt + 1)
  const rest = pathPart.slice(prefix.length)
  const slash = rest.indexOf('/')
  const api = slash === -1 ? rest : rest.slice(0, slash)
  const path = slash === -1 ? '' : rest.slice(slash)
  return { api, path, query }
}

/**
 * The upstream URL for `path` and `query` under `baseUrl`. The caller chooses the path below
 * baseUrl and nothing else: every spelling that could move the request to another host or above
 * baseUrl's path — even one a lenient server would accept — is refused before anything is sent.
 */
export function downstreamTarget(baseUrl: string, path: string, query: string | undefined): URL {
  checkPath(path)
  // eslint-disable-next-line no-control-regex
  if (query !== undefined && /[\u0000-\u001f\u007f#]/.test(query))
    throw refuse('the query contains control characters')
  const base = new URL(baseUrl)
  const basePath = base.pathname.replace(/\/+$/, '')
  const target = new URL(`${base.origin}${basePath}${path}${query === undefined ? '' : `?${query}`}`)
  // Belt and braces: whatever the checks above missed, the parsed result must still be under baseUrl.
  const underBase =
    basePath === '' || target.pathname === basePath || target.pathname.startsWith(`${basePath}/`)
  if (target.origin !== base.origin || target.username !== '' || target.password !== '' || !underBase) {
    throw refuse('the path would leave the configured baseUrl')
  }
  return target
}

/** Rules on the raw path and on its percent-decoded form, each with the reason given to the caller. */
const rawRules: [RegExp, string][] = [
  // eslint-disable-next-line no-control-regex
  [/[\u0000-\u001f\u007f]/, 'control characters'],
  [/\\/, 'a backslash'],
  [/%2f|%5c/i, 'an encoded slash or backslash'],
  [/%(?![0-9a-f]{2})/i, 'malformed percent-encoding'],
  [/[@#]|%40/i, '"@" or "#"'],
]
const decodedRules: [RegExp, string][] = [
  // eslint-disable-next-line no-control-regex
  [/[\u0000-\u001f\u007f]/, 'control characters'],
  [/%[0-9a-f]{2}/i, 'double percent-encoding'],
  [/:\/\//, 'an absolute URL'],
  [/\/\//, 'an empty path segment ("//")'],
  // `..;x` too: some servers (Tomcat) strip path parameters before resolving dot segments.
  [/(?:^|\/)\.\.?(?:;[^/]*)?(?:\/|$)/, 'a "." or ".." segment'],
]

function checkPath(path: string): void {
  if (path !== '' && !path.startsWith('/')) throw refuse('the path must start with "/"')
  for (const [rule, what] of rawRules) if (rule.test(path)) throw refuse(`the path contains ${what}`)
  let decoded: string
  try {
    decoded = decodeURIComponent(path)
  } catch {
    throw refuse('the path contains malformed percent-encoding')
  }
  for (const [rule, what] of decodedRules) if (rule.test(decoded)) throw refuse(`the path contains ${what}`)
}

function refuse(why: string): SidecarError {
  return new SidecarError('invalid_request', `Refused downstream request: ${why}`)
}
