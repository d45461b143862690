import { parseArgs } from 'node:util'
import { describeConfig } from './config/describe.ts'
import { defaultConfig, isConfigError, loadConfigFile } from './config/load.ts'
import type { SidecarConfig } from './config/types.ts'
import { runDaemonProcess } from './cli/run.ts'
import { runDemo } from './cli/demo.ts'
import { runDoctor } from './cli/doctor.ts'
import { runInject } from './cli/inject/command.ts'

const usage = `Usage:
  credential-sidecar [--config FILE]          run the daemon (FILE also from CREDENTIAL_SIDECAR_CONFIG)
  credential-sidecar check-config FILE        validate a config and print the resolved identities
  credential-sidecar doctor [--config FILE]   probe IMDS and each identity's credential path
  credential-sidecar demo [--port N]          run the built-in emulator and the daemon wired to it
  credential-sidecar inject FILE|- [options]  add the sidecar to Kubernetes workloads (inject --help)
`

/** The command line. Returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] =
    argv[0] && !argv[0].startsWith('-') ? [argv[0], ...argv.slice(1)] : ['run', ...argv]
  try {
    switch (command) {
      case 'run': {
        const { values } = parseArgs({
          args: rest,
          options: { config: { type: 'string' }, help: { type: 'boolean' } },
        })
        if (values.help) return printUsage(0)
        return await runDaemonProcess(await configFrom(values.config))
      }
      case 'check-config': {
        const { positionals } = parseArgs({ args: rest, allowPositionals: true, options: {} })
        const file = positionals[0]
        if (!file || positionals.length > 1) return printUsage(1)
        process.stdout.write(describeConfig(await loadConfigFile(file)))
        return 0
      }
      case 'doctor': {
        const { values } = parseArgs({ args: rest, options: { config: { type: 'string' } } })
        return await runDoctor(await configFrom(values.config))
      }
      case 'demo': {
        const { values } = parseArgs({ args: rest, options: { port: { type: 'string' } } })
        return await runDemo({ port: values.port === undefined ? 7780 : Number(values.port) })
      }
      case 'inject':
        return await runInject(rest, process)
      case 'help':
        return printUsage(0)
      default:
        process.stderr.write(`credential-sidecar: unknown command "${command}"\n`)
        return printUsage(1)
    }
  } catch (error) {
    if (isConfigError(error)) {
      process.stderr.write(`${error.message}\n`)
      return 1
    }
    if (error instanceof Error && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`credential-sidecar: ${error.message}\n`)
      return printUsage(1)
    }
    throw error
  }
}

async function configFrom(flag: string | undefined): Promise<SidecarConfig> {
  const file = flag ?? process.env['CREDENTIAL_SIDECAR_CONFIG']
  return file ? loadConfigFile(file) : defaultConfig()
}

function printUsage(code: number): number {
  ;(code === 0 ? process.stdout : process.stderr).write(usage)
  return code
}
