import type { Dispatcher } from 'undici'
import { readBoundedBody } from '../core/bounded-body.ts'
import { SidecarError } from '../core/errors.ts'
import { classifyTransportError } from './transport-errors.ts'
import { loadUndici } from './undici.ts'

export interface HttpRequest {
  method: 'GET' | 'POST'
  url: string | URL
  headers?: Record<string, string>
  body?: string
  /** Per-attempt timeout. */
  timeoutMs: number
  signal?: AbortSignal
}

export interface HttpResponse {
  status: number
  headers: Record<string, string>
  text: string
}

/**
 * The largest upstream answer read (contract §3): IMDS and Entra answers are a few KiB; anything
 * larger is cut off, its connection destroyed, and refused as malformed (502).
 */
export const MAX_UPSTREAM_BODY_BYTES = 1024 * 1024

/**
 * One HTTP exchange through an injected undici `Dispatcher`: the one reader of every IMDS and Entra
 * answer. Never follows redirects (undici's `request` does not): a credential-bearing request must
 * not be replayed elsewhere. The whole exchange, body included, is bounded by `timeoutMs` (a body
 * that drips a byte a second does not outlast it), and the body by `MAX_UPSTREAM_BODY_BYTES`.
 * Transport failures become `SidecarError`s with reason `timeout`, `tls_failure` or `connect_failure`.
 */
export async function sendHttp(dispatcher: Dispatcher, req: HttpRequest): Promise<HttpResponse> {
  const timeout = AbortSignal.timeout(req.timeoutMs)
  const signal = req.signal ? AbortSignal.any([req.signal, timeout]) : timeout
  const endpoint = describeEndpoint(req.url)
  const { request } = await loadUndici()
  try {
    const res = await request(req.url, {
      dispatcher,
      method: req.method,
      headers: req.headers ?? {},
      body: req.body ?? null,
      signal,
      headersTimeout: req.timeoutMs,
      bodyTimeout: req.timeoutMs,
    })
    const headers: Record<string, string> = {}
    for (const [name, value] of Object.entries(res.headers)) {
      if (value !== undefined) headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value
    }
    const text = (
      await readBoundedBody(res.body, headers['content-length'], MAX_UPSTREAM_BODY_BYTES, () =>
        tooLarge(endpoint, res.statusCode),
      )
    ).toString('utf8')
    return { status: res.statusCode, headers, text }
  } catch (error) {
    if (req.signal?.aborted) throw req.signal.reason
    if (error instanceof SidecarError) throw error
    throw transportError(error, endpoint, timeout.aborted, req.timeoutMs)
  }
}

function tooLarge(endpoint: string, status: number): SidecarError {
  return new SidecarError(
    'upstream_error',
    `${endpoint} answered ${status} with a body larger than ${MAX_UPSTREAM_BODY_BYTES} bytes; refused and the connection closed`,
    { reason: 'malformed_response', upstream: { endpoint, status } },
  )
}

/** The SidecarError for a transport failure; a programming error is rethrown as it is. */
function transportError(
  error: unknown,
  endpoint: string,
  timedOut: boolean,
  timeoutMs: number,
): SidecarError {
  const classified = classifyTransportError(error, timedOut)
  if (!classified) throw error
  const { reason, code, what } = classified
  // Our own timer: say how long we waited. Otherwise undici's or Node's code names the failure.
  const message =
    reason === 'timeout' && (timedOut || code === '')
      ? `${endpoint} did not answer within ${timeoutMs} ms`
      : `${endpoint}: ${what}${code ? ` (${code})` : ''}`
  return new SidecarError(reason === 'timeout' ? 'upstream_timeout' : 'upstream_unavailable', message, {
    reason,
    upstream: { endpoint },
    cause: error,
  })
}

/** scheme://host[:port]/path without the query string: safe to log and to put in error messages. */
export function describeEndpoint(url: string | URL): string {
  try {
    const u = typeof url === 'string' ? new URL(url) : url
    return `${u.protocol}//${u.host}${u.pathname}`
  } catch {
    return '<invalid url>'
  }
}

/** Parses a JSON object body; anything else is a malformed upstream answer. */
export function parseJsonObject(res: HttpResponse, endpoint: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(res.text)
  } catch {
    throw new SidecarError(
      'upstream_error',
      `${endpoint} answered ${res.status} with a body that is not JSON`,
      {
        reason: 'malformed_response',
        upstream: { endpoint, status: res.status },
      },
    )
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new SidecarError(
      'upstream_error',
      `${endpoint} answered ${res.status} with JSON that is not an object`,
      {
        reason: 'malformed_response',
        upstream: { endpoint, status: res.status },
      },
    )
  }
  return value as Record<string, unknown>
}

/**
 * Parses a `Retry-After` header (delta-seconds or HTTP-date) into milliseconds from `now`. Anything
 * else (a negative number, a fraction, text `Date.parse` would still read as some date) is
 * undefined: the sidecar's own back-off applies. Callers bound the value (`retryAfterSecondsFor`).
 */
export function parseRetryAfterMs(value: string | undefined, now: number): number | undefined {
  if (!value) return undefined
  const trimmed = value.trim()
  if (/^\d{1,10}$/.test(trimmed)) return Number(trimmed) * 1000
  if (!/^[A-Za-z]{3},? .*GMT$/.test(trimmed)) return undefined
  const date = Date.parse(trimmed)
  if (Number.isNaN(date)) return undefined
  return Math.max(0, date - now)
}

/**
 * Text an upstream wrote (AADSTS or IMDS error descriptions, error codes, trace ids) made fit for an
 * error message and a log line. No secrets are expected in it, but it is upstream's text and may
 * echo what it was sent: every value in `secrets` (the client secret or assertion of the request,
 * as sent and as form- or URL-encoded) becomes `[redacted]`, anything that looks like a JWT
 * `[jwt]`, line breaks become spaces, and it is cut to `maxChars` (after redaction, so a cut never
 * leaves part of a secret).
 */
export function upstreamText(text: string, maxChars: number, secrets: readonly string[] = []): string {
  let clean = text
  for (const secret of secretForms(secrets)) clean = clean.split(secret).join('[redacted]')
  return clean
    .replace(/eyJ[\w-]*\.[\w-]*\.[\w-]*/g, '[jwt]')
    .replace(/[\r\n]+/g, ' ')
    .slice(0, maxChars)
}

/** Each secret as sent and as it reads form-encoded or URL-encoded, longest first. */
function secretForms(secrets: readonly string[]): string[] {
  const forms = new Set<string>()
  for (const secret of secrets) {
    // Shorter values are no secret worth the name, and blanking them would garble the text.
    if (secret.length < 6) continue
    forms.add(secret)
    forms.add(encodeURIComponent(secret))
    forms.add(new URLSearchParams({ s: secret }).toString().slice(2))
  }
  return [...forms].sort((a, b) => b.length - a.length)
}
