import type { z } from 'zod'
import {
  confidentialClientMarkers,
  confidentialClientSchema,
  fileSchema,
  managedIdentitySchema,
  type RawConfidentialClient,
  type RawFile,
  type RawManagedIdentity,
} from './schema.ts'
import { fromZodIssues } from './zod-issues.ts'
import { pathKey, valueAt, type ConfigPath, type PathIssue } from './path.ts'
import type { YamlSource } from './yaml-source.ts'

export type RawIdentity =
  | { kind: 'managedIdentity'; name: string; raw: RawManagedIdentity }
  | { kind: 'confidentialClient'; name: string; raw: RawConfidentialClient }

/** The file with every value of the right shape; cross-field rules and defaults are resolve.ts's job. */
export interface ValidFile {
  file: RawFile
  /** In file order; undefined when the file has no `identities` section. */
  identities: RawIdentity[] | undefined
}

export type Validation = { ok: true; value: ValidFile } | { ok: false; issues: PathIssue[] }

export function validateFile(source: YamlSource): Validation {
  const top = parseAt(fileSchema, [], source)
  if (!top.ok) return top
  const file = top.data
  if (file.identities === undefined) return { ok: true, value: { file, identities: undefined } }

  const identities: RawIdentity[] = []
  const issues: PathIssue[] = []
  for (const [name, raw] of Object.entries(file.identities)) {
    const path = ['identities', name]
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      issues.push({ path, message: 'expected a mapping describing the identity' })
      continue
    }
    const markers = confidentialClientMarkers.filter((key) => Object.hasOwn(raw, key))
    const isManaged = Object.hasOwn(raw, 'managedIdentity')
    const firstMarker = markers[0]
    if (isManaged && firstMarker !== undefined) {
      issues.push({
        path: [...path, firstMarker],
        message:
          'an identity is either a managed identity (managedIdentity) or a confidential client (tenantId, clientId, clientCredentials), not both',
      })
    } else if (isManaged) {
      const parsed = parseAt(managedIdentitySchema, path, source)
      if (parsed.ok) identities.push({ kind: 'managedIdentity', name, raw: parsed.data })
      else issues.push(...parsed.issues)
    } else if (firstMarker !== undefined) {
      const parsed = parseAt(confidentialClientSchema, path, source)
      if (parsed.ok) identities.push({ kind: 'confidentialClient', name, raw: parsed.data })
      else issues.push(...parsed.issues)
    } else {
      issues.push({
        path,
        message:
          'cannot tell what kind of identity this is: add managedIdentity: {} for a managed identity, or tenantId, clientId and clientCredentials for a confidential client',
      })
    }
  }
  return issues.length > 0 ? { ok: false, issues } : { ok: true, value: { file, identities } }
}

type Parsed<T> = { ok: true; data: T } | { ok: false; issues: PathIssue[] }

/**
 * Validates the value at `path`. A scalar that was exactly `${NAME}` is text after substitution; where
 * the schema wants a number or boolean it is converted and the value validated again, so `port: ${PORT}`
 * works while a literal `port: "7780"` still fails.
 */
function parseAt<Schema extends z.ZodType>(
  schema: Schema,
  path: ConfigPath,
  source: YamlSource,
): Parsed<z.output<Schema>> {
  const first = schema.safeParse(valueAt(source.value, path))
  if (first.success) return { ok: true, data: first.data }
  if (!coerceVariables(first.error.issues, path, source)) return failure(first.error.issues, path, source)
  const second = schema.safeParse(valueAt(source.value, path))
  return second.success ? { ok: true, data: second.data } : failure(second.error.issues, path, source)
}

function failure(
  issues: readonly z.core.$ZodIssue[],
  path: ConfigPath,
  source: YamlSource,
): { ok: false; issues: PathIssue[] } {
  const located = fromZodIssues(issues, path, source.value).map((issue) => {
    const variable = source.wholeVariables.get(pathKey(issue.path))
    const value = valueAt(source.value, issue.path)
    if (variable === undefined || typeof value !== 'string') return issue
    // The message names the variable, never its value: it might be a secret set by mistake.
    return { ...issue, message: `${issue.message} (from \${${variable}})` }
  })
  return { ok: false, issues: located }
}

function coerceVariables(
  issues: readonly z.core.$ZodIssue[],
  prefix: ConfigPath,
  source: YamlSource,
): boolean {
  let changed = false
  for (const issue of issues) {
    if (issue.code !== 'invalid_type' || (issue.expected !== 'number' && issue.expected !== 'boolean'))
      continue
    const path = [
      ...prefix,
      ...issue.path.map((segment) => (typeof segment === 'number' ? segment : String(segment))),
    ]
    if (!source.wholeVariables.has(pathKey(path))) continue
    const text = valueAt(source.value, path)
    if (typeof text !== 'string') continue
    const converted = issue.expected === 'number' ? toNumber(text) : toBoolean(text)
    const parent = valueAt(source.value, path.slice(0, -1))
    const key = path.at(-1)
    if (converted === undefined || parent === null || typeof parent !== 'object' || key === undefined)
      continue
    ;(parent as Record<string | number, unknown>)[key] = converted
    changed = true
  }
  return changed
}

function toNumber(text: string): number | undefined {
  return /^\s*-?\d+(\.\d+)?\s*$/.test(text) ? Number(text) : undefined
}

function toBoolean(text: string): boolean | undefined {
  const lower = text.trim().toLowerCase()
  return lower === 'true' ? true : lower === 'false' ? false : undefined
}
