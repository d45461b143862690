import type { UpstreamErrorDetail } from '../core/errors.ts'
import { upstreamText, type HttpResponse } from './http.ts'

/**
 * What an upstream error answer says, for IMDS and Entra alike (IMDS v1 relays Entra's AADSTS body
 * as is): `{error, error_description, error_codes, trace_id, correlation_id}`, or IMDS's own
 * `{message, correlationId}`, or not JSON (status alone). Only those short fields are kept, each
 * through `upstreamText` (clipped, JWTs and the request's `secrets` blanked): never a body that
 * might echo a CSR, certificate or assertion. The correlation id falls back to Entra's
 * `client-request-id` header.
 */
export function upstreamErrorDetail(
  res: HttpResponse,
  endpoint: string,
  secrets: readonly string[] = [],
): UpstreamErrorDetail {
  const detail: UpstreamErrorDetail = { endpoint, status: res.status }
  let body: Record<string, unknown> = {}
  try {
    const parsed: unknown = JSON.parse(res.text)
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed))
      body = parsed as Record<string, unknown>
  } catch {
    // Not JSON: status alone.
  }
  const str = (v: unknown, max: number) =>
    typeof v === 'string' && v.trim() !== '' ? upstreamText(v, max, secrets) : undefined
  const error = str(body['error'], 100)
  if (error) detail.error = error
  const description = str(body['error_description'], 600) ?? str(body['message'], 600)
  if (description) detail.errorDescription = description
  const codes = body['error_codes']
  if (Array.isArray(codes)) {
    const numbers = codes
      .filter((c): c is number => typeof c === 'number' && Number.isSafeInteger(c) && c >= 0)
      .slice(0, 20)
    if (numbers.length) detail.errorCodes = numbers
  }
  const traceId = str(body['trace_id'], 100)
  if (traceId) detail.traceId = traceId
  const correlationId =
    str(body['correlation_id'], 100) ??
    str(body['correlationId'], 100) ??
    str(res.headers['client-request-id'], 100)
  if (correlationId) detail.correlationId = correlationId
  return detail
}
