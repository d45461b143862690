import { readFile } from 'node:fs/promises'
import type { SidecarConfig } from './types.ts'
import { ConfigError, type ConfigIssue } from './errors.ts'
import { configFromEnvironment } from './environment.ts'
import { formatPath, type PathIssue } from './path.ts'
import { resolveConfig } from './resolve.ts'
import { validateFile } from './validate.ts'
import { readYamlSource, type YamlSource } from './yaml-source.ts'

export { ConfigError, isConfigError, formatConfigIssue, type ConfigIssue } from './errors.ts'

export interface ParseConfigOptions {
  /** How messages name the file (as the operator passed it); also `SidecarConfig.source`. */
  source: string
  /** For `${NAME}` substitution and env-provided defaults; process.env when absent. */
  env?: NodeJS.ProcessEnv
  /** passwd(5) file that `callers.allow[].user` names resolve through; /etc/passwd when absent. */
  passwdFile?: string
  /** The platform `callers.allow` is checked against; process.platform when absent. */
  platform?: NodeJS.Platform
}

/**
 * Parses, validates and resolves a YAML config.
 *
 * @throws {ConfigError} listing every problem with file, line, column and key path.
 * @example
 * const config = parseConfig(await readFile('config.yaml', 'utf8'), { source: 'config.yaml' })
 */
export function parseConfig(text: string, options: ParseConfigOptions): SidecarConfig {
  const env = options.env ?? process.env
  const file = options.source
  const source = readYamlSource(text, env)
  if (source.syntaxIssues.length > 0) {
    throw new ConfigError(
      source.syntaxIssues.map(({ position, message }) => ({
        file,
        line: position.line,
        column: position.column,
        path: '',
        message,
      })),
    )
  }
  // Substitution problems leave values unknown; validating them would only add noise.
  if (source.issues.length > 0) throw locatedError(source.issues, file, source)
  const validation = validateFile(source)
  if (!validation.ok) throw locatedError(validation.issues, file, source)
  const resolution = resolveConfig(validation.value, {
    source: file,
    env,
    passwdFile: options.passwdFile,
    platform: options.platform,
  })
  if (!resolution.ok) throw locatedError(resolution.issues, file, source)
  return resolution.config
}

/**
 * Reads and parses a config file; messages name the file as `path` was given.
 *
 * @throws {ConfigError} also when the file cannot be read.
 */
export async function loadConfigFile(path: string, env?: NodeJS.ProcessEnv): Promise<SidecarConfig> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (cause) {
    const reason = (cause as NodeJS.ErrnoException).code ?? (cause as Error).message
    throw new ConfigError(
      [{ file: path, line: 0, column: 0, path: '', message: `cannot read the config file (${reason})` }],
      {
        cause,
      },
    )
  }
  return parseConfig(text, env === undefined ? { source: path } : { source: path, env })
}

/**
 * The config the daemon runs with when given no file: what the standard Azure and
 * `CREDENTIAL_SIDECAR_*` environment variables describe (see `environment.ts`); with none of them
 * set, the system-assigned managed identity `mi` with Bearer tokens and every default.
 *
 * @throws {ConfigError} naming the variable when one is invalid.
 */
export function defaultConfig(env: NodeJS.ProcessEnv = process.env): SidecarConfig {
  return configFromEnvironment(env)
}

function locatedError(issues: PathIssue[], file: string, source: YamlSource): ConfigError {
  const located: ConfigIssue[] = issues.map((issue) => {
    const position = source.locate(issue.at ?? issue.path)
    return {
      file,
      line: position.line,
      column: position.column,
      path: formatPath(issue.path),
      message: issue.message,
    }
  })
  located.sort((a, b) => a.line - b.line || a.column - b.column)
  return new ConfigError(located)
}
