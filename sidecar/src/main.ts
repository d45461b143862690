import { parseArgs, type ParseArgsConfig } from 'node:util'
import { describeConfig } from './config/describe.ts'
import { defaultConfig, isConfigError, loadConfigFile } from './config/load.ts'
import type { SidecarConfig } from './config/types.ts'
import { sidecarVersion } from './core/version.ts'

const usage = `Usage: credential-sidecar [COMMAND] [OPTIONS]

Commands:
  (none)               run the daemon
  check-config [FILE]  validate a config and print the resolved identities
  doctor               probe IMDS and each identity's credential path; print a report
  demo                 run the built-in emulator and the daemon wired to it
  inject [FILE|-]      add the sidecar to Kubernetes workloads (see inject --help)
  webhook              the Kubernetes mutating admission webhook (see webhook --help)
  help [COMMAND]       this help, or a command's

Options:
  -c, --config FILE    config file (also CREDENTIAL_SIDECAR_CONFIG); without one, the daemon
                       configures itself from the environment (AZURE_*, CREDENTIAL_SIDECAR_*)
  -h, --help           help (also: credential-sidecar COMMAND --help)
  -V, --version        print the version

Exit status: 0 success, 1 failure, 2 usage error.
`

const commandUsage: Record<Command, string> = {
  run: `Usage: credential-sidecar [--config FILE]

Runs the daemon. FILE also comes from CREDENTIAL_SIDECAR_CONFIG; with neither, the configuration
comes from the environment (AZURE_FEDERATED_TOKEN_FILE + AZURE_CLIENT_ID + AZURE_TENANT_ID, else
AZURE_CLIENT_ID, else the system-assigned managed identity; CREDENTIAL_SIDECAR_LISTEN,
CREDENTIAL_SIDECAR_OPS_LISTEN, CREDENTIAL_SIDECAR_SECRET_FILE, CREDENTIAL_SIDECAR_PROTOCOL_SCHEME).
SIGTERM or SIGINT drains and exits 0; a second signal exits 1 at once.
`,
  'check-config': `Usage: credential-sidecar check-config [FILE]

Validates FILE (or CREDENTIAL_SIDECAR_CONFIG; with neither, the environment) and prints the
resolved identities. Exit 0 when valid, 1 with file:line:column and key path for each problem.
`,
  doctor: `Usage: credential-sidecar doctor [--config FILE] [--json]

Probes IMDS (a short probe: off Azure the answer comes within seconds), then each identity's whole
credential path (IMDS v1/v2, Entra), and prints one line per step; never a token or key.
  --json   print the same report as JSON
Exit 0 when every identity works, 1 otherwise.
`,
  demo: `Usage: credential-sidecar demo [--port N]

Starts the built-in emulator (IMDS v1/v2, Entra, a demo mTLS resource) and the daemon wired to it
on loopback, and prints commands to try. --port: the daemon's port (default 7780; a free one if
taken). Ctrl-C stops it and removes its temporary directory.
`,
}

type Command = 'run' | 'check-config' | 'doctor' | 'demo'
const commands = new Set<string>(['run', 'check-config', 'doctor', 'demo'])

/** A mistake in the command line: exit 2 with a one-line hint. */
class UsageError extends Error {}

const common = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const satisfies ParseArgsConfig['options']

/** The command line. Returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  try {
    return await dispatch(argv)
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`credential-sidecar: ${error.message} (see credential-sidecar --help)\n`)
      return 2
    }
    if (isConfigError(error)) {
      process.stderr.write(`${error.message}\n`)
      return 1
    }
    throw error
  }
}

async function dispatch(argv: string[]): Promise<number> {
  const first = argv[0]
  const command = first !== undefined && !first.startsWith('-') ? first : 'run'
  const rest = command === first ? argv.slice(1) : argv
  // inject and webhook parse their own options and has its own help and exit codes (0 written, 1 refused, 2 usage).
  if (command === 'inject') return await (await inject()).runInject(rest, process)
  if (command === 'webhook') return await (await webhook()).runWebhook(rest, process)
  if (command === 'help') {
    const topic = rest[0]
    if (topic === undefined) return print(usage)
    if (topic === 'inject') return await (await inject()).runInject(['--help'], process)
    if (topic === 'webhook') return await (await webhook()).runWebhook(['--help'], process)
    if (!commands.has(topic)) throw new UsageError(`unknown command "${topic}"`)
    return print(commandUsage[topic as Command])
  }
  if (!commands.has(command)) throw new UsageError(`unknown command "${command}"`)
  switch (command as Command) {
    case 'run': {
      const { values } = parse(rest, { config: { type: 'string', short: 'c' } })
      if (values.help) return print(first === undefined || first.startsWith('-') ? usage : commandUsage.run)
      if (values.version) return print(`${sidecarVersion()}\n`)
      // Each command loads only its own modules: the daemon never loads the emulator (demo), its
      // node-forge CA or the Kubernetes code, which cost start-up time and resident memory.
      const { runDaemonProcess } = await import('./cli/run.ts')
      return await runDaemonProcess(await configFrom(values.config))
    }
    case 'check-config': {
      const { values, positionals } = parse(rest, { config: { type: 'string', short: 'c' } }, true)
      if (values.help) return print(commandUsage['check-config'])
      if (values.version) return print(`${sidecarVersion()}\n`)
      if (positionals.length > 1) throw new UsageError('check-config takes at most one FILE')
      if (positionals[0] !== undefined && values.config !== undefined)
        throw new UsageError('give the file either as FILE or as --config, not both')
      process.stdout.write(describeConfig(await configFrom(positionals[0] ?? values.config)))
      return 0
    }
    case 'doctor': {
      const { values } = parse(rest, { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } })
      if (values.help) return print(commandUsage.doctor)
      if (values.version) return print(`${sidecarVersion()}\n`)
      const { runDoctor } = await import('./cli/doctor.ts')
      return await runDoctor(await configFrom(values.config), process.stdout, { json: values.json ?? false })
    }
    case 'demo': {
      const { values } = parse(rest, { port: { type: 'string', short: 'p' } })
      if (values.help) return print(commandUsage.demo)
      if (values.version) return print(`${sidecarVersion()}\n`)
      const port = values.port === undefined ? 7780 : Number(values.port)
      if (!/^\d{1,5}$/.test(values.port ?? '7780') || port > 65535)
        throw new UsageError('--port expects a port number (0…65535)')
      const { runDemo } = await import('./cli/demo.ts')
      return await runDemo({ port })
    }
  }
}

/** parseArgs with -h/-V everywhere; its errors become usage errors with their first sentence only. */
function parse<Options extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: Options,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args, options: { ...common, ...options }, allowPositionals, strict: true })
  } catch (error) {
    if (error instanceof Error && String((error as { code?: string }).code).startsWith('ERR_PARSE_ARGS')) {
      throw new UsageError(firstSentence(error.message))
    }
    throw error
  }
}

function firstSentence(message: string): string {
  const sentence = message.split(/\.\s/)[0] ?? message
  return sentence.charAt(0).toLowerCase() + sentence.slice(1).replace(/\.$/, '')
}

async function configFrom(flag: string | undefined): Promise<SidecarConfig> {
  const file = flag ?? (process.env['CREDENTIAL_SIDECAR_CONFIG'] || undefined)
  return file ? loadConfigFile(file) : defaultConfig()
}

function print(text: string): number {
  process.stdout.write(text)
  return 0
}

function inject(): Promise<typeof import('./cli/inject/command.ts')> {
  return import('./cli/inject/command.ts')
}

function webhook(): Promise<typeof import('./cli/webhook/command.ts')> {
  return import('./cli/webhook/command.ts')
}
