import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const src = fileURLToPath(new URL('../../sidecar/src', import.meta.url))

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

test('production code never imports the emulator (only `demo` starts it)', () => {
  const files = sources(src)
  assert.ok(files.length > 50, `found ${files.length} source files`)
  const allowed = new Set(['cli/demo.ts'])
  const offenders = files
    .filter((file) => !file.startsWith('emulator/') && !allowed.has(file))
    .flatMap((file) =>
      importsOf(file)
        .filter((target) => target.startsWith('emulator/'))
        .map((t) => `${file} → ${t}`),
    )
  assert.deepEqual(offenders, [])
})

test('the import scan sees static and dynamic imports (it would catch an offender)', () => {
  const demo = importsOf('cli/demo.ts')
  assert.ok(
    demo.some((target) => target.startsWith('emulator/')),
    demo.join(', '),
  )
})
