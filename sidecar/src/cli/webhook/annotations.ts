import type { InjectOptions, RawInjectOptions } from '../inject/options.ts'
import { resolveInjectOptions } from '../inject/options.ts'

/** The pod annotation that opts a pod in (`enabled`) or out (`disabled`); also the namespace label. */
export const injectAnnotation = 'credential-sidecar.io/inject'

const prefix = 'credential-sidecar.io/'
/** The per-pod overrides of inject's options (contract §5), by annotation name. */
const overrides = [
  'protocol-scheme',
  'client-id',
  'config-map',
  'secret',
  'workload-identity',
  'image',
] as const

/**
 * The options for one pod: the webhook's defaults (its command line) with the pod's
 * `credential-sidecar.io/*` annotations over them. A pod that names its own ConfigMap leaves the
 * default `--client-id` behind (the file decides), and one that names its own client id leaves
 * the default ConfigMap behind (the environment mode), as if inject had been run with its values.
 *
 * @throws {InjectUsageError} naming the annotation, for a value inject would refuse as an option.
 */
export function podOptions(defaults: InjectOptions, annotations: Record<string, unknown>): InjectOptions {
  const raw: RawInjectOptions = {
    image: defaults.image,
    'protocol-scheme': defaults.protocolScheme,
    'client-id': defaults.clientId,
    'workload-identity': defaults.workloadIdentity,
    'config-map': defaults.configMap,
    secret: defaults.secret,
  }
  const given = new Set<string>()
  for (const name of overrides) {
    const value = annotations[`${prefix}${name}`]
    if (value === undefined) continue
    given.add(name)
    if (name === 'workload-identity') {
      if (value !== 'true' && value !== 'false')
        throw new AnnotationError(
          `annotation ${prefix}${name} must be "true" or "false", not ${JSON.stringify(value)}`,
        )
      raw[name] = value === 'true'
    } else raw[name] = String(value)
  }
  if (given.has('config-map') && !given.has('client-id')) delete raw['client-id']
  if (given.has('client-id') && !given.has('config-map')) delete raw['config-map']
  return resolveInjectOptions(raw, (option) =>
    given.has(option) ? `annotation ${prefix}${option}` : `--${option}`,
  )
}

/** An annotation value no option could take (a workload-identity that is not a boolean). */
export class AnnotationError extends Error {
  override readonly name = 'AnnotationError'
}

/** What the pod says about injection: `enabled`, `disabled`, or nothing (the namespace decides). */
export function podOptIn(annotations: Record<string, unknown>): 'enabled' | 'disabled' | undefined {
  const value = annotations[injectAnnotation]
  return value === 'enabled' || value === 'disabled' ? value : undefined
}
