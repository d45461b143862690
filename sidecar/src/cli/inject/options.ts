import { parseArgs } from 'node:util'
import { guid, protocolSchemes } from '../../config/schema.ts'
import type { ProtocolScheme } from '../../config/types.ts'
import { defaultImage } from './layout.ts'
import { InjectUsageError } from './refusal.ts'

export interface InjectOptions {
  /** The sidecar's image. */
  image: string
  /** The scheme of the identity the apps use: decides which SDK variables they get. */
  protocolScheme: ProtocolScheme
  /** A ConfigMap holding `config.yaml`; absent = the daemon configures itself from the environment. */
  configMap?: string
  /** An existing Secret whose key `identity-header` is the caller secret. */
  secret?: string
  /** Environment mode: `AZURE_CLIENT_ID` for the sidecar (user-assigned MI, or the workload identity app). */
  clientId?: string
  /** Label the pod for the azure-workload-identity webhook, which then feeds the sidecar alone. */
  workloadIdentity: boolean
}

export interface InjectCommandLine {
  /** A file path, or `-` for standard input. */
  input: string
  options: InjectOptions
  /** What the user should know but need not act on now (stderr; the output is still written). */
  warnings: string[]
}

/** Read when asked for, not at import: it names the package version. */
export const injectUsage = (): string => `Usage: credential-sidecar inject FILE|- [options] > OUTPUT
  Reads Kubernetes YAML and writes it back with the credential sidecar added to every
  Pod, Deployment, StatefulSet, DaemonSet, Job and CronJob (other documents unchanged).

  --image REGISTRY/IMAGE        sidecar image (default ${defaultImage()}, which names no
                                registry: a warning until you give yours)
  --protocol-scheme SCHEME      Bearer (default) or MTLS_POP: the scheme of the identity
  --client-id GUID              AZURE_CLIENT_ID for the sidecar (user-assigned managed identity)
  --workload-identity           label the pod azure.workload.identity/use: "true" and keep the
                                webhook's variables away from the app containers
  --config-map NAME             mount ConfigMap NAME (key config.yaml) instead of the environment mode
  --secret NAME                 mount Secret NAME (key identity-header) as the caller secret
`

// Kubernetes object names (RFC 1123 subdomain), as the API server would check them.
const objectName = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/

/** inject's options as given (command line, or the webhook's per-pod annotations), unchecked. */
export interface RawInjectOptions {
  image?: string | undefined
  'protocol-scheme'?: string | undefined
  'client-id'?: string | undefined
  'workload-identity'?: boolean | undefined
  'config-map'?: string | undefined
  secret?: string | undefined
}

/** The `parseArgs` spec of inject's options; the webhook takes the same ones as its defaults. */
export const injectOptionSpec = {
  image: { type: 'string' },
  'protocol-scheme': { type: 'string' },
  'client-id': { type: 'string' },
  'workload-identity': { type: 'boolean' },
  'config-map': { type: 'string' },
  secret: { type: 'string' },
} as const

/** The command line of `inject`, checked whole so that a bad combination never reaches the YAML. */
export function parseInjectCommandLine(args: string[]): InjectCommandLine | 'help' {
  let parsed
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { ...injectOptionSpec, help: { type: 'boolean', short: 'h' } },
    })
  } catch (error) {
    throw new InjectUsageError(error instanceof Error ? error.message : String(error))
  }
  const { values, positionals } = parsed
  if (values.help) return 'help'
  if (positionals.length !== 1)
    throw new InjectUsageError('give exactly one input: a file, or - for standard input')
  const options = resolveInjectOptions(values, (option) => `--${option}`)
  const warnings = values.image === undefined ? [defaultImageWarning(options.image)] : []
  return { input: positionals[0]!, options, warnings }
}

/**
 * Checks raw options, alone and together, and fills in the defaults. `name` says how a message
 * names an option (`--image`, or the annotation that set it).
 *
 * @throws {InjectUsageError} naming the option.
 */
export function resolveInjectOptions(
  values: RawInjectOptions,
  name: (option: keyof RawInjectOptions) => string,
): InjectOptions {
  const image = values.image ?? defaultImage()
  if (!image || /\s/.test(image))
    throw new InjectUsageError(`${name('image')} "${image}" is not an image reference`)
  const scheme = values['protocol-scheme'] ?? 'Bearer'
  if (!isProtocolScheme(scheme))
    throw new InjectUsageError(`${name('protocol-scheme')} must be Bearer or MTLS_POP, not "${scheme}"`)
  for (const flag of ['config-map', 'secret'] as const) {
    const value = values[flag]
    if (value !== undefined && !objectName.test(value))
      throw new InjectUsageError(`${name(flag)} "${value}" is not a Kubernetes object name`)
  }
  const clientId = values['client-id']
  if (clientId !== undefined && !guid.test(clientId))
    throw new InjectUsageError(`${name('client-id')} "${clientId}" is not a GUID`)
  if (values['config-map'] !== undefined && clientId !== undefined)
    throw new InjectUsageError(
      `${name('client-id')} configures the environment mode; with ${name('config-map')} the file decides`,
    )
  const workloadIdentity = values['workload-identity'] ?? false
  // The workload identity credential is a projected token file, which cannot bind a key (contract §2).
  if (workloadIdentity && scheme === 'MTLS_POP' && values['config-map'] === undefined)
    throw new InjectUsageError(
      `${name('workload-identity')} with ${name('protocol-scheme')} MTLS_POP: a federated token file cannot bind a certificate; use a ConfigMap with a bound credential`,
    )

  const options: InjectOptions = { image, protocolScheme: scheme, workloadIdentity }
  if (values['config-map'] !== undefined) options.configMap = values['config-map']
  if (values.secret !== undefined) options.secret = values.secret
  if (clientId !== undefined) options.clientId = clientId
  return options
}

/**
 * `credential-sidecar:<version>` names no registry, so the kubelet would pull it from Docker Hub's
 * library, where this project publishes nothing (and anyone could take the name).
 */
export function defaultImageWarning(image: string): string {
  return `warning: the sidecar image ${image} names no registry, so the kubelet would pull docker.io/library/${image}, which is not this project's; push the image to your registry and pass --image REGISTRY/${image}`
}

function isProtocolScheme(value: string): value is ProtocolScheme {
  return (protocolSchemes as readonly string[]).includes(value)
}
