import { createHash, timingSafeEqual } from 'node:crypto'
import { isIP } from 'node:net'
import type { Context, MiddlewareHandler } from 'hono'
import { isLoopbackHost } from '../config/urls.ts'
import { SidecarError } from '../errors.ts'

export interface CallerGuardOptions {
  /** Demand `Metadata: true` (IMDS's SSRF defence). */
  requireMetadataHeader: boolean
  /** Current caller secret, or undefined when none is configured. */
  secret: () => string | undefined
  /** Host names/addresses a request may name in `Host` (DNS-rebinding defence). */
  hostAllowed: (hostname: string) => boolean
  /** `callers.allow`: throws 403 unless the connection's uid has an entry (routes then check the identity). */
  authorizeCaller?: (c: Context) => Promise<void>
}

/**
 * Headers a reverse proxy adds (RFC 7239 and the de-facto ones): their presence means the request
 * was relayed for someone else, and a local credential must not be handed to a remote caller.
 */
export const forwardingHeaders = ['x-forwarded-for', 'forwarded', 'x-forwarded-host', 'x-real-ip'] as const

/**
 * Guards token routes. Checks run from the most to the least telling of an attack: a forwarded
 * request or a foreign Host header means the request did not come from a local caller (403),
 * then the IMDS `Metadata: true` header (400, worded as IMDS words it), then the caller secret (401),
 * then the connection's uid against `callers.allow` (403).
 */
export function callerGuard(options: CallerGuardOptions): MiddlewareHandler {
  return async function guardCaller(c, next) {
    const forwarded = forwardingHeaders.find((name) => c.req.header(name) !== undefined)
    if (forwarded !== undefined) {
      throw new SidecarError(
        'forbidden',
        `Forwarded requests are refused (${forwarded} header): the sidecar serves local callers only`,
      )
    }
    const hostname = hostnameOf(c.req.header('host'))
    if (hostname === undefined || !options.hostAllowed(hostname)) {
      throw new SidecarError(
        'forbidden',
        'The Host header does not name this sidecar (possible DNS rebinding)',
      )
    }
    if (options.requireMetadataHeader && c.req.header('metadata')?.toLowerCase() !== 'true') {
      throw new SidecarError('invalid_request', 'Required metadata header not specified')
    }
    const secret = options.secret()
    if (secret !== undefined && !secretMatches(c.req.header('x-identity-header'), secret)) {
      throw new SidecarError('unauthorized', 'Missing or wrong X-IDENTITY-HEADER')
    }
    if (options.authorizeCaller) await options.authorizeCaller(c)
    await next()
  }
}

/** Constant-time comparison: hashing first makes both sides the same length. */
export function secretMatches(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
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
