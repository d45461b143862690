import assert from 'node:assert/strict'
import { ConfigError, parseConfig } from '../../sidecar/src/config/load.ts'
import type { SidecarConfig } from '../../sidecar/src/config/types.ts'

/** YAML from lines, so a test can say which line a key is on. */
export function yaml(...lines: string[]): string {
  return lines.join('\n') + '\n'
}

export function parse(text: string, env: NodeJS.ProcessEnv = {}): SidecarConfig {
  return parseConfig(text, { source: 'config.yaml', env })
}

export function parseError(text: string, env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    parse(text, env)
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`)
    return error
  }
  assert.fail('expected the config to be rejected')
}

/** Asserts that one issue line starts with `config.yaml:LINE:COL path: ` and contains `fragment`. */
export function assertIssue(
  error: ConfigError,
  location: string,
  path: string,
  fragment: string | RegExp,
): void {
  const prefix = `config.yaml:${location} ${path === '' ? '' : `${path}: `}`
  const line = error.message.split('\n').find((candidate) => candidate.startsWith(prefix))
  assert.ok(line, `no issue "${prefix}" in:\n${error.message}`)
  if (typeof fragment === 'string') assert.ok(line.includes(fragment), `"${line}" lacks "${fragment}"`)
  else assert.match(line, fragment)
}

export const tenant = '00000000-0000-0000-0000-000000000000'
export const client = '11111111-1111-1111-1111-111111111111'
