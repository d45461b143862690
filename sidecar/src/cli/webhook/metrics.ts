import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client'
import { decisions, type Decision } from './review.ts'

/** The webhook's Prometheus metrics, on a registry of its own (no global default registry). */
export class WebhookMetrics {
  readonly registry = new Registry()
  readonly reviews = new Counter({
    name: 'credential_sidecar_webhook_reviews_total',
    help: 'AdmissionReviews answered, by decision (injected, unchanged, skipped, denied, malformed)',
    labelNames: ['decision'] as const,
    registers: [this.registry],
  })
  readonly duration = new Histogram({
    name: 'credential_sidecar_webhook_review_duration_seconds',
    help: 'Time to answer an AdmissionReview, from the first byte read to the answer, by decision',
    labelNames: ['decision'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  })

  constructor() {
    collectDefaultMetrics({ register: this.registry })
    // Present from the first scrape: rate() and absent() alerts need a 0, not a gap.
    for (const decision of decisions) this.reviews.inc({ decision }, 0)
  }

  observe(decision: Decision, seconds: number): void {
    this.reviews.inc({ decision })
    this.duration.observe({ decision }, seconds)
  }
}
