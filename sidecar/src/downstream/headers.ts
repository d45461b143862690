import type { IncomingHttpHeaders } from 'node:http'

/** Hop-by-hop headers (RFC 9110 §7.6.1) plus ones undici refuses to be given. */
const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
])

/**
 * Caller headers never forwarded: its own credentials and the sidecar's (the resource gets the
 * sidecar's Authorization instead), Host (undici sets the target's), and what would tell the
 * resource a story about the caller's network (`Forwarded`, `X-Forwarded-*`). `Expect` because
 * undici does not do 100-continue.
 */
const droppedRequestHeaders = new Set([
  'authorization',
  'cookie',
  'host',
  'metadata',
  'x-identity-header',
  'forwarded',
  'expect',
])

/** The caller's request headers as the resource should see them. */
export function forwardedRequestHeaders(headers: Headers): Record<string, string> {
  const listed = connectionTokens(headers.get('connection'))
  const out: Record<string, string> = {}
  for (const [name, value] of headers) {
    const n = name.toLowerCase()
    if (hopByHop.has(n) || listed.has(n) || droppedRequestHeaders.has(n)) continue
    if (n.startsWith('x-forwarded-') || n.startsWith('proxy-')) continue
    out[n] = value
  }
  return out
}

/**
 * The resource's response headers as the caller should see them: hop-by-hop ones dropped, and
 * `Set-Cookie` too — a session the resource opens on the strength of the sidecar's token would be
 * a bearer credential handed to the caller, defeating proxy mode's "the key and token never leave".
 */
export function forwardedResponseHeaders(headers: IncomingHttpHeaders): Headers {
  const connection = headers['connection']
  const listed = connectionTokens(Array.isArray(connection) ? connection.join(',') : (connection ?? null))
  const out = new Headers()
  for (const [name, value] of Object.entries(headers)) {
    const n = name.toLowerCase()
    if (
      value === undefined ||
      hopByHop.has(n) ||
      listed.has(n) ||
      n === 'set-cookie' ||
      n.startsWith('proxy-')
    )
      continue
    for (const v of Array.isArray(value) ? value : [value]) out.append(n, v)
  }
  return out
}

function connectionTokens(value: string | null): Set<string> {
  if (!value) return new Set()
  return new Set(
    value
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter(Boolean),
  )
}
