/**
 * One config problem, located in the file the operator wrote. `line` and `column` are 1-based and
 * point at the offending key (or the value, inside a list); a missing key points at its parent
 * mapping. Line 0 means the problem concerns the whole file (it could not be read).
 */
export interface ConfigIssue {
  file: string
  line: number
  column: number
  path: string
  message: string
}

export function formatConfigIssue(issue: ConfigIssue): string {
  const where = issue.line > 0 ? `${issue.file}:${issue.line}:${issue.column}` : `${issue.file}:`
  return issue.path === '' ? `${where} ${issue.message}` : `${where} ${issue.path}: ${issue.message}`
}

/**
 * The config cannot be used. `message` lists every issue, one per line, as
 * `config.yaml:12:5 identities.app.clientCredentials[0].sourceType: expected one of …`.
 * No message ever carries a configured value that could be a secret.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError'
  readonly issues: ConfigIssue[]

  constructor(issues: ConfigIssue[], options: { cause?: unknown } = {}) {
    super(
      issues.map(formatConfigIssue).join('\n'),
      options.cause === undefined ? undefined : { cause: options.cause },
    )
    this.issues = issues
  }
}

export function isConfigError(value: unknown): value is ConfigError {
  return value instanceof ConfigError
}
