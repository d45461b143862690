import { createHash, timingSafeEqual } from 'node:crypto'
import { isIP } from 'node:net'
import type { Context, MiddlewareHandler } from 'hono'
import { isLoopbackHost } from '../../config/urls.ts'
import { SidecarError } from '../../core/errors.ts'

export interface CallerGuardOptions {
  /** Demand `Metadata: true` (IMDS's SSRF defence). */
  requireMetadataHeader: boolean
  /**
   * The caller secrets accepted now, one a line (`SecretFile.current`; empty: none is), or
   * undefined when none is configured.
   */
  secret: () => string | undefined
  /** Host names/addresses a request may name in `Host` (DNS-rebinding defence). */
  hostAllowed: (hostname: string) => boolean
  /** `callers.allow`: throws 403 unless the connection's uid has an entry (routes then check the identity). */
  authorizeCaller?: (c: Context) => Promise<void>
}

/** Reads one request header by lower-case name: duplicates joined with ", " as Fetch `Headers` does. */
export type HeaderLookup = (name: string) => string | undefined

/**
 * Headers a reverse proxy adds (RFC 7239 and the de-facto ones): their presence means the request
 * was relayed for someone else, and a local credential must not be handed to a remote caller.
 */
export const forwardingHeaders = ['x-forwarded-for', 'forwarded', 'x-forwarded-host', 'x-real-ip'] as const

/**
 * The caller checks for token routes, as one pure decision over header values so the hono
 * middleware and the fast lane (`fast-lane.ts`) cannot drift apart. Returns the refusal, or
 * undefined when the caller may proceed. Checks run from the most to the least telling of an attack:
 * a forwarded request or a foreign Host header means the request did not come from a local caller
 * (403), then the IMDS `Metadata: true` header (400, worded as IMDS words it), then the caller
 * secret (401). The connection's uid against `callers.allow` (403) comes after, in `callerGuard`.
 */
export function checkCaller(options: CallerGuardOptions, header: HeaderLookup): SidecarError | undefined {
  const forwarded = forwardingHeaders.find((name) => header(name) !== undefined)
  if (forwarded !== undefined) {
    return new SidecarError(
      'forbidden',
      `Forwarded requests are refused (${forwarded} header): the sidecar serves local callers only`,
    )
  }
  const hostname = hostnameOf(header('host'))
  if (hostname === undefined || !options.hostAllowed(hostname)) {
    return new SidecarError(
      'forbidden',
      'The Host header does not name this sidecar (possible DNS rebinding)',
    )
  }
  if (options.requireMetadataHeader && header('metadata')?.toLowerCase() !== 'true') {
    return new SidecarError('invalid_request', 'Required metadata header not specified')
  }
  const secret = options.secret()
  if (secret !== undefined && !secretMatches(header('x-identity-header'), secret)) {
    return new SidecarError('unauthorized', 'Missing or wrong X-IDENTITY-HEADER')
  }
  return undefined
}

/** `checkCaller` as hono middleware for the token routes. */
export function callerGuard(options: CallerGuardOptions): MiddlewareHandler {
  return async function guardCaller(c, next) {
    const refusal = checkCaller(options, (name) => c.req.header(name))
    if (refusal) throw refusal
    if (options.authorizeCaller) await options.authorizeCaller(c)
    await next()
  }
}

/**
 * `HeaderLookup` over node:http's raw header list, joining duplicates exactly as the Fetch
 * `Headers` that hono reads would (node's own `req.headers` drops a duplicate Host instead).
 */
export function rawHeaderLookup(rawHeaders: readonly string[]): HeaderLookup {
  return (name) => {
    let value: string | undefined
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const key = rawHeaders[i] as string
      if (key.length === name.length && key.toLowerCase() === name) {
        const v = (rawHeaders[i + 1] as string).trim()
        value = value === undefined ? v : `${value}, ${v}`
      }
    }
    return value
  }
}

/**
 * Whether `given` is one of the `accepted` secrets (one a line: two during a rotation; none when
 * empty). Constant time for each: hashing first makes both sides the same length, and every line
 * is compared whatever the outcome of the others.
 */
export function secretMatches(given: string | undefined, accepted: string): boolean {
  if (given === undefined) return false
  const a = createHash('sha256').update(given).digest()
  let matched = false
  for (const secret of accepted.split('\n')) {
    if (secret === '') continue
    const b = createHash('sha256').update(secret).digest()
    matched = timingSafeEqual(a, b) || matched
  }
  return matched
}

/** `127.0.0.1:7780` → `127.0.0.1`; `[::1]:7780` → `::1`; undefined when absent or malformed. */
export function hostnameOf(host: string | undefined): string | undefined {
  if (!host) return undefined
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(host.trim())
  if (!match) return undefined
  return (match[1] ?? match[2] ?? '').toLowerCase()
}

/**
 * Hosts a local caller may use: `localhost`, loopback addresses, and the bound address. When the
 * operator bound a non-loopback address (allowNonLoopback), IP literals are accepted too, but never
 * a DNS name other than localhost: a rebinding attack needs a name.
 */
export function localHostPolicy(boundHost: string): (hostname: string) => boolean {
  const bound = boundHost.toLowerCase().replace(/^\[|\]$/g, '')
  const nonLoopback = !isLoopbackHost(bound)
  return (hostname) => hostname === bound || isLoopbackHost(hostname) || (nonLoopback && isIP(hostname) !== 0)
}
