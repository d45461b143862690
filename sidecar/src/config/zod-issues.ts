import type { z } from 'zod'
import { closestKey } from './suggest.ts'
import { toConfigPath, valueAt, type ConfigPath, type PathIssue } from './path.ts'

/**
 * Zod issues rewritten for an operator: YAML words (mapping, list), no echo of the offending value
 * (it may be a secret from the environment), one issue per unknown key so each gets its own line.
 */
export function fromZodIssues(
  issues: readonly z.core.$ZodIssue[],
  prefix: ConfigPath,
  root: unknown,
): PathIssue[] {
  return issues.flatMap((issue) => {
    const path = [...prefix, ...toConfigPath(issue.path)]
    if (issue.code === 'unrecognized_keys') {
      const allowed = /\(allowed here: (.*)\)$/.exec(issue.message)?.[1]?.split(', ') ?? []
      return issue.keys.map((key) => {
        const suggestion = closestKey(key, allowed)
        const hint = suggestion === undefined ? '' : `; did you mean ${suggestion}?`
        return { path: [...path, key], message: `${issue.message}${hint}` }
      })
    }
    return [{ path, message: describeIssue(issue, valueAt(root, path)) }]
  })
}

function describeIssue(issue: z.core.$ZodIssue, value: unknown): string {
  switch (issue.code) {
    case 'invalid_type':
      if (value === undefined) return `required key is missing (expected ${typeName(issue.expected)})`
      return `expected ${typeName(issue.expected)}, got ${kindOf(value)}`
    case 'invalid_value':
      return `expected ${issue.values.length === 1 ? '' : 'one of '}${issue.values.map(String).join(', ')}`
    case 'invalid_union':
      // Zod's discriminated union reports the allowed discriminator values in `options` (not in its types).
      const options: unknown = (issue as { options?: unknown }).options
      if ('discriminator' in issue && Array.isArray(options)) {
        const expected = `expected one of ${options.map(String).join(', ')}`
        return value === undefined ? `required key is missing (${expected})` : expected
      }
      return issue.message
    case 'too_small':
      if (issue.origin === 'string' && Number(issue.minimum) === 1) return 'must not be empty'
      if (issue.origin === 'number') return `must be ${issue.inclusive ? '≥' : '>'} ${issue.minimum}`
      return issue.message
    case 'too_big':
      if (issue.origin === 'number') return `must be ${issue.inclusive ? '≤' : '<'} ${issue.maximum}`
      return issue.message
    default:
      return issue.message
  }
}

function typeName(expected: string): string {
  switch (expected) {
    case 'object':
    case 'record':
      return 'a mapping'
    case 'array':
      return 'a list'
    case 'int':
      return 'an integer'
    case 'boolean':
      return 'true or false'
    default:
      return `a ${expected}`
  }
}

function kindOf(value: unknown): string {
  if (value === null) return 'nothing (null)'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a mapping'
  if (typeof value === 'number' && !Number.isInteger(value)) return 'a fractional number'
  return `a ${typeof value}`
}
