import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const src = fileURLToPath(new URL('../../sidecar/src', import.meta.url))

/**
 * The layers of sidecar/src, bottom first: a folder may import its own layer's folders or lower
 * ones, never a higher one. This is the architecture the folder tree is meant to read as:
 * `cli → daemon → http/downstream → tokens → identities → cache → credentials → upstream → pki → model → core`,
 * with config (plain data) under everything that is configured, and the emulator beside http, used
 * only by `cli/demo.ts` and the tests.
 */
const layers: readonly (readonly string[])[] = [
  ['core'],
  ['model'],
  ['config'],
  ['pki'],
  ['upstream'],
  ['credentials'],
  ['cache'],
  ['identities'],
  ['tokens'],
  ['downstream'],
  ['http', 'emulator'],
  ['daemon'],
  ['cli'],
  ['main.ts'],
]
const rankOf = new Map(layers.flatMap((folders, rank) => folders.map((folder) => [folder, rank] as const)))

/** Every .ts file under `dir`, as a path relative to sidecar/src. */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return sources(path)
    return entry.name.endsWith('.ts') ? [relative(src, path)] : []
  })
}

/** The relative modules a file imports, statically or dynamically, as paths relative to sidecar/src. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(src, file), 'utf8')
  const specifiers = [
    ...text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]/gm),
    ...text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
  ].map((match) => match[1]!)
  return specifiers
    .filter((specifier) => specifier.startsWith('.'))
    .map((specifier) => relative(src, resolve(dirname(join(src, file)), specifier)))
}

/** The top-level folder (or root file) a path belongs to. */
function topOf(path: string): string {
  return path.split('/')[0]!
}

const files = sources(src)
const edges = files.flatMap((file) => importsOf(file).map((target) => ({ file, target })))

test('every file of sidecar/src sits in a known layer', () => {
  assert.ok(files.length > 50, `found ${files.length} source files`)
  const unplaced = [...new Set(files.map(topOf))].filter((top) => !rankOf.has(top))
  assert.deepEqual(unplaced, [], 'add new top-level folders to the layer list in this test')
})

test('no folder imports a folder above it', () => {
  const upward = edges
    .filter(({ file, target }) => rankOf.get(topOf(target))! > rankOf.get(topOf(file))!)
    .map(({ file, target }) => `${file} → ${target}`)
  assert.deepEqual(upward, [])
})

test('no two folders import each other, directly or round a loop', () => {
  const graph = new Map<string, Set<string>>()
  for (const { file, target } of edges) {
    const [from, to] = [dirname(file), dirname(target)]
    if (from === to) continue
    if (!graph.has(from)) graph.set(from, new Set())
    graph.get(from)!.add(to)
  }
  assert.deepEqual(cyclesOf(graph), [])
})

test('production code never imports the emulator (only `demo` starts it)', () => {
  const allowed = new Set(['cli/demo.ts'])
  const offenders = edges
    .filter(
      ({ file, target }) =>
        !file.startsWith('emulator/') && !allowed.has(file) && target.startsWith('emulator/'),
    )
    .map(({ file, target }) => `${file} → ${target}`)
  assert.deepEqual(offenders, [])
})

test('the checks would catch an offender', () => {
  const demo = importsOf('cli/demo.ts')
  assert.ok(
    demo.some((target) => target.startsWith('emulator/')),
    demo.join(', '),
  )
  const loop = new Map([
    ['a', new Set(['b'])],
    ['b', new Set(['c'])],
    ['c', new Set(['a'])],
  ])
  assert.deepEqual(cyclesOf(loop), ['a → b → c → a'])
})

/** Each cycle of the folder graph once, as `a → b → … → a` (Tarjan's strongly connected components). */
function cyclesOf(graph: Map<string, Set<string>>): string[] {
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const cycles: string[] = []
  const visit = (node: string): void => {
    index.set(node, index.size)
    low.set(node, index.get(node)!)
    stack.push(node)
    onStack.add(node)
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next)
        low.set(node, Math.min(low.get(node)!, low.get(next)!))
      } else if (onStack.has(next)) low.set(node, Math.min(low.get(node)!, index.get(next)!))
    }
    if (low.get(node) !== index.get(node)) return
    const component: string[] = []
    let member: string
    do {
      member = stack.pop()!
      onStack.delete(member)
      component.push(member)
    } while (member !== node)
    if (component.length > 1) cycles.push(describeLoop(graph, component.sort()))
  }
  for (const node of [...graph.keys()].sort()) if (!index.has(node)) visit(node)
  return cycles
}

/** One loop through a strongly connected component, starting at its first member. */
function describeLoop(graph: Map<string, Set<string>>, component: string[]): string {
  const members = new Set(component)
  const start = component[0]!
  const path = [start]
  const seen = new Set([start])
  let node = start
  for (;;) {
    const next = [...(graph.get(node) ?? [])]
      .sort()
      .find((n) => members.has(n) && (n === start || !seen.has(n)))
    if (next === undefined || next === start) return [...path, start].join(' → ')
    path.push(next)
    seen.add(next)
    node = next
  }
}
