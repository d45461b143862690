import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { sidecarVersion } from './version.ts'

export interface MetricsOptions {
  /** Configured identity names: their per-identity counters start at 0 instead of appearing late. */
  identities?: Iterable<string>
}

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
  readonly requestDuration = new Histogram({
    name: 'credential_sidecar_request_duration_seconds',
    help: 'Time to answer an HTTP request, by route',
    labelNames: ['route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20],
    registers: [this.registry],
  })
  readonly cache: Counter<'event'> = new Counter({
    name: 'credential_sidecar_token_cache_events_total',
    help: 'Token cache hits, misses, refreshes and refresh failures',
    labelNames: ['event'] as const,
    registers: [this.registry],
    collect: () => this.#cacheCounts.flushInto(this.cache),
  })
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
  readonly certificateExpiry = new Gauge({
    name: 'credential_sidecar_certificate_expiry_timestamp_seconds',
    help: 'When the certificate of the latest token an identity obtained over mTLS expires (not_after)',
    labelNames: ['identity'] as const,
    registers: [this.registry],
  })
  /**
   * One entry per cached token (cache key → its series' label text and expiry), rendered by
   * `render()` and dropped when the cache drops the token: the series stay bounded by
   * `cache.maxTokens` however many scopes callers ask for over the process's life (issue 21). Kept
   * out of prom-client: its label hashing and escaping cost ~5 µs a series at every scrape; here a
   * series' label text is made once, when its token arrives.
   */
  readonly #tokens = new Map<
    string,
    { identity: string; scope: string; labels: string; expiresOnSeconds: number }
  >()
  readonly bearerFallbacks = new Counter({
    name: 'credential_sidecar_bearer_fallback_total',
    help: 'mtls_pop requested, Bearer served because allowBearerFallback is on',
    labelNames: ['identity'] as const,
    registers: [this.registry],
  })
  readonly callerRefusals = new Counter({
    name: 'credential_sidecar_caller_refusals_total',
    help: 'Requests refused by callers.allow, by caller uid ("unknown" when it could not be read) and identity asked for ("none" when refused before one was named)',
    labelNames: ['uid', 'identity'] as const,
    registers: [this.registry],
  })
  readonly callerLookups = new Histogram({
    name: 'credential_sidecar_caller_lookup_duration_seconds',
    help: 'Reading the uid of a new connection from the kernel socket table (once per connection), by result',
    labelNames: ['result'] as const,
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
    registers: [this.registry],
  })
  readonly buildInfo = new Gauge({
    name: 'credential_sidecar_build_info',
    help: 'Always 1; the labels say which version runs on which Node.js',
    labelNames: ['version', 'node'] as const,
    registers: [this.registry],
  })

  constructor(options: MetricsOptions = {}) {
    // Process and runtime metrics (CPU, memory, event loop lag, GC, handles), on this registry only.
    collectDefaultMetrics({ register: this.registry })
    this.buildInfo.set({ version: sidecarVersion(), node: process.versions.node }, 1)
    // Counters present from the first scrape: rate() and absent() alerts need a 0, not a gap.
    for (const event of ['hit', 'miss', 'refresh', 'refresh_failure']) this.cache.inc({ event }, 0)
    for (const identity of options.identities ?? []) this.bearerFallbacks.inc({ identity }, 0)
  }

  /**
   * One HTTP request answered. The count is a plain number until scraped; the duration goes to the
   * histogram at once (prom-client has no way to hand it bucket counts later).
   */
  countRequest(route: string, status: number, seconds: number): void {
    this.#requestCounts.add(`${status} ${route}`, () => ({ route, status: String(status) }))
    this.requestDuration.observe({ route }, seconds)
  }

  countCacheEvent(event: CacheEvent): void {
    this.#cacheCounts.add(event, () => ({ event }))
  }

  /** Records one upstream call. `endpoint` is a short stable name, e.g. `imds.token`, `entra.token`. */
  observeUpstream(endpoint: string, status: number | 'error', seconds: number): void {
    this.upstreamCalls.observe({ endpoint, status: String(status) }, seconds)
  }

  /**
   * Records a token an identity just obtained for the cache entry `cacheKey` (and its certificate,
   * when bound): epoch ms in. The token's series lives until `forgetToken(cacheKey)`.
   */
  observeToken(
    cacheKey: string,
    identity: string,
    scope: string,
    expiresOn: number,
    certificateNotAfter?: number,
  ): void {
    const known = this.#tokens.get(cacheKey)
    const labels =
      known && known.identity === identity && known.scope === scope
        ? known.labels
        : `{identity="${escapeLabelValue(identity)}",scope="${escapeLabelValue(scope)}"}`
    this.#tokens.set(cacheKey, { identity, scope, labels, expiresOnSeconds: Math.floor(expiresOn / 1000) })
    if (certificateNotAfter !== undefined)
      this.certificateExpiry.set({ identity }, Math.floor(certificateNotAfter / 1000))
  }

  /** The cache dropped the entry `cacheKey` (evicted, invalidated, cleared): its series goes too. */
  forgetToken(cacheKey: string): void {
    this.#tokens.delete(cacheKey)
  }

  /** How many cached tokens have a series (bounded by the cache; equal labels publish once). */
  get tokenSeries(): number {
    return this.#tokens.size
  }

  /**
   * The Prometheus text of every metric (prom-client's format), rendered one metric per turn of the
   * event loop, the token series a few thousand lines per turn: a scrape (default metrics read
   * /proc; a thousand token series) never holds a cached `/token` behind it for longer than one
   * such piece takes.
   */
  async render(): Promise<string> {
    const texts: string[] = []
    for (const metric of this.registry.getMetricsAsArray()) {
      await nextTurn()
      texts.push(await this.registry.getSingleMetricAsString(metric.name))
    }
    await nextTurn()
    texts.push(await this.#renderTokens())
    return `${texts.join('\n\n')}\n`
  }

  async #renderTokens(): Promise<string> {
    // Two cache entries may share labels (a binding rotation: same identity and scope, another
    // certificate): publish the later expiry.
    const latest = new Map<string, number>()
    for (const { labels, expiresOnSeconds } of this.#tokens.values()) {
      const known = latest.get(labels)
      if (known === undefined || known < expiresOnSeconds) latest.set(labels, expiresOnSeconds)
    }
    const lines = [`# HELP ${tokenExpiryName} ${tokenExpiryHelp}`, `# TYPE ${tokenExpiryName} gauge`]
    for (const [labels, seconds] of latest) {
      lines.push(`${tokenExpiryName}${labels} ${seconds}`)
      if (lines.length % 2000 === 0) await nextTurn()
    }
    return lines.join('\n')
  }
}

const tokenExpiryName = 'credential_sidecar_token_expiry_timestamp_seconds'
const tokenExpiryHelp = 'When each cached token expires, by identity and scope (only tokens the cache holds)'

/** A label value as the Prometheus text format escapes it (backslash, double quote, line feed). */
function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}
