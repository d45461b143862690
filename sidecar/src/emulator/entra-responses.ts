import { randomUUID } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import type { Fault } from './faults.ts'

/** A refusal the emulated Entra answers with an Entra-shaped error body. */
export class EntraRefusal extends Error {
  readonly status: number
  readonly error: string
  readonly aadsts: number

  constructor(status: number, error: string, aadsts: number, description: string) {
    super(description)
    this.status = status
    this.error = error
    this.aadsts = aadsts
  }
}

/**
 * Entra's error body: the AADSTS code leads the description, which ends with the trace id,
 * correlation id and timestamp; the same values come as separate fields.
 */
export function entraErrorBody(
  refusal: { error: string; aadsts: number; message: string },
  correlationId: string,
  now: number,
): Record<string, unknown> {
  const traceId = randomUUID()
  const timestamp = new Date(now)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z')
  return {
    error: refusal.error,
    error_description: `AADSTS${refusal.aadsts}: ${refusal.message} Trace ID: ${traceId} Correlation ID: ${correlationId} Timestamp: ${timestamp}`,
    error_codes: [refusal.aadsts],
    timestamp,
    trace_id: traceId,
    correlation_id: correlationId,
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text),
    ...headers,
  })
  res.end(text)
}

/** Answers a scripted fault: a string body goes out as-is (for "not JSON" tests), anything else as JSON. */
export function sendFault(res: ServerResponse, fault: Fault, correlationId: string, now: number): void {
  const headers = fault.headers ?? {}
  if (typeof fault.body === 'string') {
    res.writeHead(fault.status, { 'content-type': 'text/plain', ...headers })
    res.end(fault.body)
    return
  }
  const body =
    fault.body ??
    entraErrorBody(
      fault.status >= 500 || fault.status === 429
        ? {
            error: 'temporarily_unavailable',
            aadsts: 90033,
            message: 'A transient error has occurred. Please try again.',
          }
        : { error: 'invalid_request', aadsts: 900144, message: 'Scripted fault.' },
      correlationId,
      now,
    )
  sendJson(res, fault.status, body, headers)
}
