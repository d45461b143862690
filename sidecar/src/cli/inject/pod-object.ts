import { Document, isMap } from 'yaml'
import type { InjectOptions } from './options.ts'
import { injectPod } from './pod-injection.ts'
import { InjectRefusal } from './refusal.ts'

/**
 * The pod `inject` makes of `pod` (a Pod object as JSON: what an AdmissionReview carries), by the
 * very function that injects YAML documents, so the webhook and the command cannot drift apart.
 * `pod` is not changed. Throws `InjectRefusal` with inject's message, prefixed by `what`.
 */
export function injectPodObject(pod: Record<string, unknown>, options: InjectOptions, what: string): unknown {
  const document = new Document(pod, { version: '1.1' })
  if (!isMap(document.contents)) throw new InjectRefusal(`${what}: not an object`)
  injectPod(document, document.contents, { metadata: ['metadata'], spec: ['spec'] }, options, what)
  return document.toJS()
}
