/** A location in the config tree: mapping keys and sequence indices, as zod reports them. */
export type ConfigPath = readonly (string | number)[]

/** A problem found at a path; `at` locates it elsewhere when the path itself is absent from the file. */
export interface PathIssue {
  path: ConfigPath
  message: string
  at?: ConfigPath
}

export function toConfigPath(path: readonly PropertyKey[]): ConfigPath {
  return path.map((segment) => (typeof segment === 'number' ? segment : String(segment)))
}

/** A map key for a path; distinct paths never collide (unlike the dotted form). */
export function pathKey(path: ConfigPath): string {
  return JSON.stringify(path)
}

const plainKey = /^[A-Za-z0-9_-]+$/

/** `identities.app.clientCredentials[0].sourceType`; keys that would read ambiguously are quoted. */
export function formatPath(path: ConfigPath): string {
  let out = ''
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`
    else if (plainKey.test(segment)) out += out === '' ? segment : `.${segment}`
    else out += `[${JSON.stringify(segment)}]`
  }
  return out
}

export function valueAt(root: unknown, path: ConfigPath): unknown {
  let node = root
  for (const segment of path) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, segment)) return undefined
    node = (node as Record<string | number, unknown>)[segment]
  }
  return node
}
