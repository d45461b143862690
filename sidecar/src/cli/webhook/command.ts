import { parseArgs } from 'node:util'
import { createLogger } from '../../core/log.ts'
import { defaultImage } from '../inject/layout.ts'
import {
  defaultImageWarning,
  injectOptionSpec,
  resolveInjectOptions,
  type InjectOptions,
} from '../inject/options.ts'
import { InjectUsageError } from '../inject/refusal.ts'
import { WebhookServer } from './server.ts'

export interface CommandIo {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
}

/** Read when asked for, not at import: it names the package version. */
export const webhookUsage =
  (): string => `Usage: credential-sidecar webhook --tls-cert FILE --tls-key FILE [--listen HOST:PORT] [inject options]
  The Kubernetes mutating admission webhook: POST /mutate (AdmissionReview admission.k8s.io/v1)
  answers a JSONPatch that adds the sidecar exactly as inject does, for each Pod the webhook
  configuration sends (unless annotated credential-sidecar.io/inject: disabled). GET /healthz,
  /readyz and /metrics on the same listener. The certificate and key are re-read when they change.

  --tls-cert FILE               serving certificate (PEM, chain allowed)
  --tls-key FILE                its private key (PEM)
  --listen HOST:PORT            default 0.0.0.0:8443
  inject's options, as defaults each pod may override with an annotation
  (credential-sidecar.io/image, /protocol-scheme, /client-id, /workload-identity, /config-map, /secret):
  --image REGISTRY/IMAGE        sidecar image (default ${defaultImage()}, which names no registry)
  --protocol-scheme SCHEME      Bearer (default) or MTLS_POP
  --client-id GUID              AZURE_CLIENT_ID for the sidecar (user-assigned managed identity)
  --workload-identity           pods use Azure workload identity (the sidecar alone gets the token)
  --config-map NAME             mount ConfigMap NAME (key config.yaml) instead of the environment mode
  --secret NAME                 mount Secret NAME (key identity-header) as the caller secret
SIGTERM or SIGINT: readiness fails, then in-flight reviews finish and the process exits 0.
`

interface WebhookCommandLine {
  host: string
  port: number
  tlsCert: string
  tlsKey: string
  defaults: InjectOptions
  warnings: string[]
}

export function parseWebhookCommandLine(args: string[]): WebhookCommandLine | 'help' {
  let parsed
  try {
    parsed = parseArgs({
      args,
      options: {
        ...injectOptionSpec,
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        listen: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    })
  } catch (error) {
    throw new InjectUsageError(error instanceof Error ? error.message : String(error))
  }
  const { values } = parsed
  if (values.help) return 'help'
  const tlsCert = values['tls-cert']
  const tlsKey = values['tls-key']
  if (!tlsCert || !tlsKey) throw new InjectUsageError('--tls-cert FILE and --tls-key FILE are required')
  const listen = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(values.listen ?? '0.0.0.0:8443')
  const port = Number(listen?.[3])
  if (!listen || port > 65535)
    throw new InjectUsageError(`--listen expects HOST:PORT, not "${values.listen}"`)
  const defaults = resolveInjectOptions(values, (option) => `--${option}`)
  const warnings = values.image === undefined ? [defaultImageWarning(defaults.image)] : []
  return { host: listen[1] ?? listen[2]!, port, tlsCert, tlsKey, defaults, warnings }
}

/**
 * `credential-sidecar webhook …`: runs until SIGTERM/SIGINT (exit 0), a second signal exits 1
 * at once; 1 when it cannot start (certificate, port), 2 for a bad command line.
 */
export async function runWebhook(args: string[], io: CommandIo): Promise<number> {
  let commandLine
  try {
    commandLine = parseWebhookCommandLine(args)
  } catch (error) {
    if (!(error instanceof InjectUsageError)) throw error
    io.stderr.write(`credential-sidecar webhook: ${error.message} (see credential-sidecar webhook --help)\n`)
    return 2
  }
  if (commandLine === 'help') {
    io.stdout.write(webhookUsage())
    return 0
  }
  const logger = createLogger()
  for (const warning of commandLine.warnings) logger.warn(warning.replace(/^warning: /, ''))
  let stopping: ((signal: string) => void) | undefined
  const stopped = new Promise<string>((resolve) => (stopping = resolve))
  let signalled = false
  const onSignal = (signal: string) => {
    if (signalled) {
      logger.warn({ signal }, 'second signal; exiting now')
      process.exit(1)
    }
    signalled = true
    stopping?.(signal)
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)

  let server: WebhookServer
  try {
    server = await WebhookServer.start({ ...commandLine, logger })
  } catch (error) {
    logger.fatal({ error: error instanceof Error ? error.message : String(error) }, 'failed to start')
    return 1
  }
  const signal = await stopped
  logger.info({ signal }, 'shutting down')
  // The Service takes the endpoint out once readiness fails; until then reviews still arrive.
  await server.close({ drainDelayMs: 3000, graceMs: 10_000 })
  return 0
}
