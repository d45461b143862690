/**
 * Upstream times come as numbers, numeric strings or dates. An integer at or above 978307200
 * (2001-01-01) is an absolute epoch in seconds, anything smaller is relative seconds: the rule of
 * MSAL.NET's DateTimeHelpers, because IMDS and App Service disagree on what `expires_on` holds.
 * Returns epoch milliseconds, or undefined when the value is absent or unreadable.
 */
export function parseExpiry(value: unknown, nowMs: number): number | undefined {
  if (value === undefined || value === null || value === '') return undefined
  const seconds =
    typeof value === 'number'
      ? value
      : typeof value === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(value)
        ? Number(value)
        : undefined
  if (seconds !== undefined) {
    if (!Number.isFinite(seconds) || seconds < 0) return undefined
    return seconds >= 978307200 ? Math.round(seconds * 1000) : Math.round(nowMs + seconds * 1000)
  }
  if (typeof value === 'string') {
    const date = Date.parse(value)
    return Number.isNaN(date) ? undefined : date
  }
  return undefined
}

/** A relative duration in seconds (`expires_in`, `refresh_in`): number or numeric string. */
export function parseSeconds(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined
  if (typeof value === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(value)) return Number(value)
  return undefined
}
