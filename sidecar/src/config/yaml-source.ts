import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, type Document } from 'yaml'
import { substituteEnv } from './env.ts'
import { pathKey, type ConfigPath, type PathIssue } from './path.ts'

export interface Position {
  line: number
  column: number
}

/** The YAML file as plain data, plus where each value came from. */
export interface YamlSource {
  value: unknown
  /** Problems found while reading: YAML syntax, duplicate keys, unset environment variables. */
  issues: PathIssue[]
  /** Issues that have no key path (YAML syntax errors), already positioned. */
  syntaxIssues: { position: Position; message: string }[]
  /** Scalars that were exactly `${NAME}` (by pathKey): they may stand for a number or boolean. */
  wholeVariables: Map<string, string>
  /** The key's position for a mapping entry, the node's for a list item; an absent path → its nearest present parent. */
  locate(path: ConfigPath): Position
}

interface Located {
  key?: Position
  node: Position
}

// A config file has no use for deep alias expansion; the cap keeps a hostile "billion laughs" file cheap.
const maxAliasExpansions = 1000

export function readYamlSource(text: string, env: NodeJS.ProcessEnv): YamlSource {
  const lineCounter = new LineCounter()
  // uniqueKeys is off so the walk below can report a duplicate with its full key path.
  const doc = parseDocument(text, {
    lineCounter,
    prettyErrors: true,
    uniqueKeys: false,
    keepSourceTokens: true,
  })
  const positions = new Map<string, Located>()
  const issues: PathIssue[] = []
  const wholeVariables = new Map<string, string>()
  const start: Position = { line: 1, column: 1 }

  const positionAt = (offset: number | undefined): Position => {
    if (offset === undefined) return start
    const { line, col } = lineCounter.linePos(offset)
    return { line, column: col }
  }

  const locate = (path: ConfigPath): Position => {
    for (let length = path.length; length >= 0; length--) {
      const found = positions.get(pathKey(path.slice(0, length)))
      if (found) return found.key ?? found.node
    }
    return start
  }

  const syntaxIssues = [...doc.errors, ...doc.warnings].map((error) => ({
    position: error.linePos ? { line: error.linePos[0].line, column: error.linePos[0].col } : start,
    message:
      error.code === 'MULTIPLE_DOCS'
        ? 'YAML: a config file holds one document; remove the second "---"'
        : `YAML: ${error.message.replace(/ at line \d+, column \d+:[\s\S]*$/, '').trim()}`,
  }))
  if (syntaxIssues.length > 0) return { value: undefined, issues, syntaxIssues, wholeVariables, locate }

  let aliasExpansions = 0
  const resolving = new Set<unknown>()

  const walk = (node: unknown, path: ConfigPath): unknown => {
    if (node === null || node === undefined) return null
    if (isAlias(node)) {
      const target = node.resolve(doc as Document)
      if (!target || resolving.has(target) || ++aliasExpansions > maxAliasExpansions) {
        issues.push({ path, message: 'YAML alias is undefined, recursive or expanded too often' })
        return null
      }
      resolving.add(target)
      try {
        return walk(target, path)
      } finally {
        resolving.delete(target)
      }
    }
    if (isMap(node)) {
      const out: Record<string, unknown> = {}
      const firstLine = new Map<string, number>()
      for (const pair of node.items) {
        const keyNode = pair.key
        const keyValue = isScalar(keyNode) ? keyNode.value : undefined
        const keyPosition = positionAt(isScalar(keyNode) ? keyNode.range?.[0] : node.range?.[0])
        if (typeof keyValue !== 'string' && typeof keyValue !== 'number' && typeof keyValue !== 'boolean') {
          positions.set(pathKey([...path, '?']), { node: keyPosition })
          issues.push({ path: [...path, '?'], message: 'mapping keys must be plain words' })
          continue
        }
        const key = String(keyValue)
        const childPath = [...path, key]
        const seen = firstLine.get(key)
        if (seen !== undefined) {
          positions.set(pathKey([...childPath, '(duplicate)']), { node: keyPosition })
          issues.push({
            path: childPath,
            message: `duplicate key (first set on line ${seen}); each key may appear once per mapping`,
            at: [...childPath, '(duplicate)'],
          })
          continue
        }
        firstLine.set(key, keyPosition.line)
        const valueNode = pair.value as { range?: [number, number, number] | null } | null
        positions.set(pathKey(childPath), {
          key: keyPosition,
          node: positionAt(valueNode?.range?.[0] ?? undefined),
        })
        // defineProperty: a key named __proto__ must stay an own property, not change the prototype.
        Object.defineProperty(out, key, {
          value: walk(pair.value, childPath),
          enumerable: true,
          writable: true,
          configurable: true,
        })
      }
      return out
    }
    if (isSeq(node)) {
      return node.items.map((item, index) => {
        const childPath = [...path, index]
        const itemRange = (item as { range?: [number, number, number] | null } | null)?.range
        positions.set(pathKey(childPath), { node: positionAt(itemRange?.[0] ?? node.range?.[0]) })
        return walk(item, childPath)
      })
    }
    if (isScalar(node)) {
      if (typeof node.value !== 'string') return node.value
      const substituted = substituteEnv(node.value, env)
      if (!substituted.ok) {
        issues.push({ path, message: substituted.message })
        return node.value
      }
      if (substituted.wholeVariable !== undefined)
        wholeVariables.set(pathKey(path), substituted.wholeVariable)
      return substituted.value
    }
    issues.push({ path, message: 'unsupported YAML node' })
    return null
  }

  const contents = doc.contents
  if (contents) positions.set(pathKey([]), { node: positionAt(contents.range?.[0]) })
  const value = contents ? walk(contents, []) : {}
  // An empty file (or one holding only comments) is an empty config: every default applies.
  return { value: value === null ? {} : value, issues, syntaxIssues, wholeVariables, locate }
}
