/** One RFC 6902 operation, of the three a diff needs. */
export type PatchOperation =
  { op: 'add' | 'replace'; path: string; value: unknown } | { op: 'remove'; path: string }

/**
 * The RFC 6902 patch that turns `from` into `to`: objects are compared member by member, so the
 * patch touches only what changed (a label, an annotation, `spec.initContainers`) and leaves what
 * another webhook may have set alone; an array or a scalar that changed is replaced whole.
 */
export function jsonPatch(from: unknown, to: unknown, path = ''): PatchOperation[] {
  if (!isObject(from) || !isObject(to)) return equal(from, to) ? [] : [{ op: 'replace', path, value: to }]
  const operations: PatchOperation[] = []
  for (const key of Object.keys(from))
    if (!Object.hasOwn(to, key)) operations.push({ op: 'remove', path: `${path}/${escape(key)}` })
  for (const [key, value] of Object.entries(to)) {
    const at = `${path}/${escape(key)}`
    if (!Object.hasOwn(from, key)) operations.push({ op: 'add', path: at, value })
    else operations.push(...jsonPatch(from[key], value, at))
  }
  return operations
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** RFC 6901: `~` is `~0`, `/` is `~1` (annotation keys have slashes). */
function escape(key: string): string {
  return key.replaceAll('~', '~0').replaceAll('/', '~1')
}

function equal(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => equal(x, b[i]))
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a)
    return (
      keys.length === Object.keys(b).length &&
      keys.every((key) => Object.hasOwn(b, key) && equal(a[key], b[key]))
    )
  }
  return false
}
