#!/usr/bin/env node
// The bin shim stays plain JavaScript that any Node.js can parse: it checks the version first, so an
// old Node prints one line instead of a stack trace from deep inside a dependency, and only then
// loads the daemon (dynamic import: a static one would be evaluated before the check).
import { existsSync } from 'node:fs'

const requiredMajor = 24
const found = process.versions.node
if (Number(found.split('.')[0]) < requiredMajor) {
  process.stderr.write(
    `credential-sidecar: requires Node.js ${requiredMajor} or later; this is Node.js ${found} (${process.execPath})\n`,
  )
  process.exit(1)
}

// In a checkout of the repository the TypeScript sources are the truth (Node 24 strips their types;
// a dist/ left by an earlier build may be stale); an installed package ships only the compiled dist/,
// and runs its bundle (dist/bundle, scripts/bundle.mjs): a few chunks instead of ~500 modules, about
// half the start-up CPU and less resident memory. dist/main.js stays for a build without the bundle.
const sources = new URL('../src/main.ts', import.meta.url)
const bundle = new URL('../dist/bundle/main.js', import.meta.url)
const entry = existsSync(sources)
  ? sources.href
  : existsSync(bundle)
    ? bundle.href
    : new URL('../dist/main.js', import.meta.url).href
const { main } = await import(entry)

// Exit explicitly: the daemon has closed its servers by the time main resolves, and nothing
// (a keep-alive socket, a background refresh) should keep a stopped process alive.
process.exit(await main(process.argv.slice(2)))
