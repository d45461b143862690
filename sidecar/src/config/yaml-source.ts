import {
  LineCounter,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  parseDocument,
  type Alias,
  type Document,
  type Scalar,
  type YAMLMap,
  type YAMLSeq,
} from 'yaml'
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
  // uniqueKeys is off so the walk can report a duplicate with its full key path.
  const doc = parseDocument(text, {
    lineCounter,
    prettyErrors: true,
    uniqueKeys: false,
    keepSourceTokens: true,
  })
  const walker = new YamlWalker(doc, lineCounter, env)
  const locate = (path: ConfigPath): Position => walker.locate(path)
  const syntaxIssues = syntaxIssuesOf(doc)
  const read = { issues: walker.issues, syntaxIssues, wholeVariables: walker.wholeVariables, locate }
  if (syntaxIssues.length > 0) return { value: undefined, ...read }
  // An empty file (or one holding only comments) is an empty config: every default applies.
  const value = walker.walkDocument()
  return { value: value === null ? {} : value, ...read }
}

const start: Position = { line: 1, column: 1 }

/** YAML syntax errors and warnings, positioned, in the sidecar's words. */
function syntaxIssuesOf(doc: Document): YamlSource['syntaxIssues'] {
  return [...doc.errors, ...doc.warnings].map((error) => ({
    position: error.linePos ? { line: error.linePos[0].line, column: error.linePos[0].col } : start,
    message:
      error.code === 'MULTIPLE_DOCS'
        ? 'YAML: a config file holds one document; remove the second "---"'
        : `YAML: ${error.message.replace(/ at line \d+, column \d+:[\s\S]*$/, '').trim()}`,
  }))
}

type Ranged = { range?: [number, number, number] | null } | null | undefined

/**
 * Turns the parsed document into plain data, noting where each key and item stands (for messages
 * that name file, line and column), substituting `${ENV}` in strings, and recording what cannot be
 * used: duplicate keys, keys that are not words, aliases that are undefined, recursive or expanded
 * too often, unset variables.
 */
class YamlWalker {
  readonly issues: PathIssue[] = []
  readonly wholeVariables = new Map<string, string>()
  readonly #positions = new Map<string, Located>()
  readonly #doc: Document
  readonly #lineCounter: LineCounter
  readonly #env: NodeJS.ProcessEnv
  #aliasExpansions = 0
  readonly #resolving = new Set<unknown>()

  constructor(doc: Document, lineCounter: LineCounter, env: NodeJS.ProcessEnv) {
    this.#doc = doc
    this.#lineCounter = lineCounter
    this.#env = env
  }

  /** The key's position for a mapping entry, the node's for a list item; an absent path → its nearest present parent. */
  locate(path: ConfigPath): Position {
    for (let length = path.length; length >= 0; length--) {
      const found = this.#positions.get(pathKey(path.slice(0, length)))
      if (found) return found.key ?? found.node
    }
    return start
  }

  walkDocument(): unknown {
    const contents = this.#doc.contents
    if (!contents) return {}
    this.#positions.set(pathKey([]), { node: this.#positionAt(contents.range?.[0]) })
    return this.#walk(contents, [])
  }

  #walk(node: unknown, path: ConfigPath): unknown {
    if (node === null || node === undefined) return null
    if (isAlias(node)) return this.#alias(node, path)
    if (isMap(node)) return this.#map(node, path)
    if (isSeq(node)) return this.#seq(node, path)
    if (isScalar(node)) return this.#scalar(node, path)
    this.issues.push({ path, message: 'unsupported YAML node' })
    return null
  }

  #alias(node: Alias, path: ConfigPath): unknown {
    const target = node.resolve(this.#doc)
    if (!target || this.#resolving.has(target) || ++this.#aliasExpansions > maxAliasExpansions) {
      this.issues.push({ path, message: 'YAML alias is undefined, recursive or expanded too often' })
      return null
    }
    this.#resolving.add(target)
    try {
      return this.#walk(target, path)
    } finally {
      this.#resolving.delete(target)
    }
  }

  #map(node: YAMLMap, path: ConfigPath): Record<string, unknown> {
    const out: Record<string, unknown> = {}
    const firstLine = new Map<string, number>()
    for (const pair of node.items) {
      const keyNode = pair.key
      const keyValue = isScalar(keyNode) ? keyNode.value : undefined
      const keyPosition = this.#positionAt(isScalar(keyNode) ? keyNode.range?.[0] : node.range?.[0])
      if (typeof keyValue !== 'string' && typeof keyValue !== 'number' && typeof keyValue !== 'boolean') {
        this.#positions.set(pathKey([...path, '?']), { node: keyPosition })
        this.issues.push({ path: [...path, '?'], message: 'mapping keys must be plain words' })
        continue
      }
      const key = String(keyValue)
      const childPath = [...path, key]
      const seen = firstLine.get(key)
      if (seen !== undefined) {
        this.#positions.set(pathKey([...childPath, '(duplicate)']), { node: keyPosition })
        this.issues.push({
          path: childPath,
          message: `duplicate key (first set on line ${seen}); each key may appear once per mapping`,
          at: [...childPath, '(duplicate)'],
        })
        continue
      }
      firstLine.set(key, keyPosition.line)
      this.#positions.set(pathKey(childPath), {
        key: keyPosition,
        node: this.#positionAt((pair.value as Ranged)?.range?.[0] ?? undefined),
      })
      // defineProperty: a key named __proto__ must stay an own property, not change the prototype.
      Object.defineProperty(out, key, {
        value: this.#walk(pair.value, childPath),
        enumerable: true,
        writable: true,
        configurable: true,
      })
    }
    return out
  }

  #seq(node: YAMLSeq, path: ConfigPath): unknown[] {
    return node.items.map((item, index) => {
      const childPath = [...path, index]
      this.#positions.set(pathKey(childPath), {
        node: this.#positionAt((item as Ranged)?.range?.[0] ?? node.range?.[0]),
      })
      return this.#walk(item, childPath)
    })
  }

  #scalar(node: Scalar, path: ConfigPath): unknown {
    if (typeof node.value !== 'string') return node.value
    const substituted = substituteEnv(node.value, this.#env)
    if (!substituted.ok) {
      this.issues.push({ path, message: substituted.message })
      return node.value
    }
    if (substituted.wholeVariable !== undefined)
      this.wholeVariables.set(pathKey(path), substituted.wholeVariable)
    return substituted.value
  }

  #positionAt(offset: number | undefined): Position {
    if (offset === undefined) return start
    const { line, col } = this.#lineCounter.linePos(offset)
    return { line, column: col }
  }
}
