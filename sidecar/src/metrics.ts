import { Counter, Gauge, Histogram, Registry } from 'prom-client'

export type CacheEvent =
  'hit' | 'miss' | 'refresh' | 'refresh_failure' | 'forced_refresh' | 'forced_refresh_shared'

/**
 * Counts kept as plain numbers on the hot path and handed to prom-client only when scraped: an
 * `inc` with labels hashes them every time, a Map lookup of a ready-made key does not.
 */
class PendingCounts<L extends string> {
  readonly #pending = new Map<string, { labels: Record<L, string>; count: number }>()

  add(key: string, labels: () => Record<L, string>): void {
    const slot = this.#pending.get(key)
    if (slot) slot.count++
    else this.#pending.set(key, { labels: labels(), count: 1 })
  }

  /** Moves the counts accumulated since the last flush into `counter`. */
  flushInto(counter: Counter<L>): void {
    for (const slot of this.#pending.values()) {
      if (slot.count > 0) counter.inc(slot.labels, slot.count)
      slot.count = 0
    }
  }
}

/**
 * Prometheus metrics for one daemon instance. Each instance owns its registry (no global default
 * registry), so tests and embedders can run several daemons in one process.
 */
export class Metrics {
  readonly registry = new Registry()
  readonly #requestCounts = new PendingCounts<'route' | 'status'>()
  readonly #cacheCounts = new PendingCounts<'event'>()
  // Published at scrape time: prom-client calls collect() before it reads a metric.
  readonly requests: Counter<'route' | 'status'> = new Counter({
    name: 'credential_sidecar_requests_total',
    help: 'HTTP requests served, by route and status',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
    collect: () => this.#requestCounts.flushInto(this.requests),
  })
  readonly cache: Counter<'event'> = new Counter({
    name: 'credential_sidecar_token_cache_events_total',
    help: 'Token cache hits, misses, refreshes and refresh failures',
    labelNames: ['event'] as const,
    registers: [this.registry],
    collect: () => this.#cacheCounts.flushInto(this.cache),
  })
  /** One HTTP request answered (hot path: no label hashing until scraped). */
  countRequest(route: string, status: number): void {
    this.#requestCounts.add(`${status} ${route}`, () => ({ route, status: String(status) }))
  }

  countCacheEvent(event: CacheEvent): void {
    this.#cacheCounts.add(event, () => ({ event }))
  }
  readonly upstreamCalls = new Histogram({
    name: 'credential_sidecar_upstream_request_duration_seconds',
    help: 'Upstream calls (IMDS, Entra) by endpoint and status',
    labelNames: ['endpoint', 'status'] as const,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  })
  readonly credentialExpiry = new Gauge({
    name: 'credential_sidecar_credential_expiry_timestamp_seconds',
    help: 'When each identity binding certificate or assertion expires',
    labelNames: ['identity', 'credential'] as const,
    registers: [this.registry],
  })
  readonly bearerFallbacks = new Counter({
    name: 'credential_sidecar_bearer_fallback_total',
    help: 'mtls_pop requested, Bearer served because allowBearerFallback is on',
    labelNames: ['identity'] as const,
    registers: [this.registry],
  })

  /** Records one upstream call. `endpoint` is a short stable name, e.g. `imds.token`, `entra.token`. */
  observeUpstream(endpoint: string, status: number | 'error', seconds: number): void {
    this.upstreamCalls.observe({ endpoint, status: String(status) }, seconds)
  }
}
