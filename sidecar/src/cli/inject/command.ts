import { readFile } from 'node:fs/promises'
import { text } from 'node:stream/consumers'
import { injectYaml } from './inject.ts'
import { injectUsage, parseInjectCommandLine } from './options.ts'
import { InjectRefusal, InjectUsageError } from './refusal.ts'

export interface CommandIo {
  stdin: NodeJS.ReadableStream
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
}

/** `credential-sidecar inject FILE|- [options]`: 0 written, 1 refused (nothing written), 2 usage. */
export async function runInject(args: string[], io: CommandIo): Promise<number> {
  let commandLine
  try {
    commandLine = parseInjectCommandLine(args)
  } catch (error) {
    if (!(error instanceof InjectUsageError)) throw error
    io.stderr.write(`credential-sidecar inject: ${error.message}\n${injectUsage()}`)
    return 2
  }
  if (commandLine === 'help') {
    io.stdout.write(injectUsage())
    return 0
  }
  const { input, options, warnings } = commandLine
  let source: string
  try {
    source = input === '-' ? await text(io.stdin) : await readFile(input, 'utf8')
  } catch (error) {
    io.stderr.write(`credential-sidecar inject: cannot read ${input}: ${(error as Error).message}\n`)
    return 1
  }
  try {
    // All or nothing: output starts only once every document was injected.
    const output = injectYaml(source, options, input === '-' ? '<stdin>' : input)
    for (const warning of warnings) io.stderr.write(`credential-sidecar inject: ${warning}\n`)
    // Wait for the write: the bin exits right after, and a pipe may not have taken it all yet.
    await new Promise<void>((resolve, reject) =>
      io.stdout.write(output, (error) => (error ? reject(error) : resolve())),
    )
    return 0
  } catch (error) {
    if (!(error instanceof InjectRefusal)) throw error
    io.stderr.write(`credential-sidecar inject: ${error.message}\n`)
    return 1
  }
}
