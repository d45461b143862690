import type { InjectOptions } from '../inject/options.ts'
import { sidecarContainerName } from '../inject/layout.ts'
import { injectPodObject } from '../inject/pod-object.ts'
import { InjectRefusal, InjectUsageError } from '../inject/refusal.ts'
import { AnnotationError, podOptIn, podOptions } from './annotations.ts'
import { jsonPatch } from './json-patch.ts'

/**
 * What the webhook did with one review:
 * - `injected`: a patch adds the sidecar;
 * - `unchanged`: the pod already has it (a reinvocation, or a pod injected by `inject`): no patch;
 * - `skipped`: not a Pod CREATE, or the pod says `disabled`: allowed, no patch;
 * - `denied`: inject would refuse the pod (or its annotations): not allowed, inject's message;
 * - `malformed`: not an AdmissionReview admission.k8s.io/v1: HTTP 400.
 */
export type Decision = 'injected' | 'unchanged' | 'skipped' | 'denied' | 'malformed'
export const decisions: readonly Decision[] = ['injected', 'unchanged', 'skipped', 'denied', 'malformed']

export interface ReviewOutcome {
  /** The HTTP status: 200 for every review that could be read, 400 for a malformed one. */
  status: number
  /** The AdmissionReview to answer (it always carries `request.uid` when there was one). */
  body: Record<string, unknown>
  decision: Decision
  /** For the log line: the request's namespace and the pod's name (or generateName). */
  namespace?: string
  pod?: string
  /** Why it was denied or malformed (no secrets: inject's messages name fields, never values of secrets). */
  reason?: string
}

type Json = Record<string, unknown>
const apiVersion = 'admission.k8s.io/v1'

/**
 * Answers one AdmissionReview (already parsed JSON). Any review that reaches the webhook is
 * opted in unless the pod says `disabled`: the MutatingWebhookConfiguration's selectors decide
 * which pods are sent (namespaces labelled `credential-sidecar.io/inject=enabled`, and pods
 * annotated `credential-sidecar.io/inject: enabled`), since a review carries no namespace labels.
 */
export function review(body: unknown, defaults: InjectOptions): ReviewOutcome {
  if (!isObject(body) || body['apiVersion'] !== apiVersion || body['kind'] !== 'AdmissionReview')
    return malformed(undefined, `expected an AdmissionReview ${apiVersion}`)
  const request = body['request']
  if (!isObject(request)) return malformed(undefined, 'the AdmissionReview has no request')
  const uid = request['uid']
  if (typeof uid !== 'string' || uid === '') return malformed(undefined, 'request.uid is missing')
  const namespace = typeof request['namespace'] === 'string' ? request['namespace'] : undefined
  const kind = request['kind']
  const resource = request['resource']
  if (!isObject(kind) || !isObject(resource) || typeof request['operation'] !== 'string')
    return malformed(uid, 'request.kind, request.resource and request.operation are required')

  const isPodCreate =
    kind['group'] === '' &&
    kind['version'] === 'v1' &&
    kind['kind'] === 'Pod' &&
    resource['resource'] === 'pods' &&
    !request['subResource'] &&
    request['operation'] === 'CREATE'
  const base = { ...(namespace === undefined ? {} : { namespace }) }
  if (!isPodCreate) return { ...base, ...allowed(uid), decision: 'skipped' }

  const pod = request['object']
  if (!isObject(pod)) return { ...base, ...malformed(uid, 'request.object is not a Pod') }
  const metadata = isObject(pod['metadata']) ? pod['metadata'] : {}
  const name = stringOr(metadata['name']) ?? stringOr(metadata['generateName'])
  const outcome = { ...base, ...(name === undefined ? {} : { pod: name }) }
  const annotations = isObject(metadata['annotations']) ? metadata['annotations'] : {}
  if (podOptIn(annotations) === 'disabled') return { ...outcome, ...allowed(uid), decision: 'skipped' }
  const spec = isObject(pod['spec']) ? pod['spec'] : {}
  const initContainers = Array.isArray(spec['initContainers']) ? spec['initContainers'] : []
  if (initContainers.some((container) => isObject(container) && container['name'] === sidecarContainerName))
    return { ...outcome, ...allowed(uid), decision: 'unchanged' }

  const what = `Pod ${namespace ?? ''}${namespace ? '/' : ''}${name ?? '<no name>'}`
  let injected: unknown
  try {
    injected = injectPodObject(pod, podOptions(defaults, annotations), what)
  } catch (error) {
    if (error instanceof InjectRefusal) return { ...outcome, ...denied(uid, error.message) }
    if (error instanceof InjectUsageError || error instanceof AnnotationError)
      return { ...outcome, ...denied(uid, `${what}: ${error.message}`) }
    // A pod shape inject did not foresee: still an answer kube-apiserver can show, with the uid.
    const message = error instanceof Error ? error.message : String(error)
    return { ...outcome, ...denied(uid, `${what}: the webhook could not inject this pod (${message})`) }
  }
  const patch = jsonPatch(pod, injected)
  if (patch.length === 0) return { ...outcome, ...allowed(uid), decision: 'unchanged' }
  return {
    ...outcome,
    ...allowed(uid, { patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') }),
    decision: 'injected',
  }
}

function allowed(uid: string, extra: Json = {}): { status: 200; body: Json } {
  return { status: 200, body: answer({ uid, allowed: true, ...extra }) }
}

function denied(uid: string, message: string): Omit<ReviewOutcome, 'namespace' | 'pod'> {
  return {
    status: 200,
    body: answer({ uid, allowed: false, status: { code: 403, reason: 'Forbidden', message } }),
    decision: 'denied',
    reason: message,
  }
}

/** 400, still in the AdmissionReview shape, with the uid when there was one to echo. */
export function malformed(uid: string | undefined, message: string): ReviewOutcome {
  return {
    status: 400,
    body: answer({ uid: uid ?? '', allowed: false, status: { code: 400, reason: 'BadRequest', message } }),
    decision: 'malformed',
    reason: message,
  }
}

function answer(response: Json): Json {
  return { apiVersion, kind: 'AdmissionReview', response }
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function stringOr(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}
