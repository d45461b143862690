/**
 * Bundles the daemon (src/main.ts and everything it imports, dependencies included) into
 * dist/bundle/ with esbuild, for the installed bin to run instead of dist/'s ~500 separate modules.
 *
 *   node scripts/bundle.mjs [OUTDIR]        (default: dist/bundle, next to tsc's dist/)
 *
 * Why (issue 21, figures in bench/startup.ts): the compiled daemon read, resolved and compiled 684
 * modules (3 MB of JavaScript) at start: 5.7× a bare node:http server's CPU to ready, and kept every
 * module's source text in the heap. One resolved graph in a few chunks, comments and whitespace
 * dropped, costs about half of that and ~17 MB less RSS.
 *
 * - Code splitting keeps each command's own code (demo's emulator, inject, doctor) in chunks the
 *   daemon never loads, as dist/main.js's dynamic imports do.
 * - node-forge stays external, loaded on first use by pki/forge.ts (PKCS#12, IMDS v2 CSRs), resolved
 *   from the install's node_modules like any dependency.
 * - Identifiers are kept (no --minify-identifiers): stack traces and error names stay readable.
 * - OUTDIR must sit two levels below the package root, as dist/bundle does: core/version.ts reads
 *   ../../package.json relative to the module.
 */
import { build } from 'esbuild'
import { join } from 'node:path'
import { rmSync } from 'node:fs'

const root = join(import.meta.dirname, '..')
const outdir = process.argv[2] ?? join(root, 'dist', 'bundle')

rmSync(outdir, { recursive: true, force: true })
await build({
  entryPoints: [join(root, 'src', 'main.ts')],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node24',
  external: ['node-forge', 'koffi'],
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  // The CommonJS dependencies bundled into ESM (undici, pino, prom-client) call require() for
  // Node's built-in modules; ESM has none, so give each chunk one.
  banner: {
    js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
  },
  logLevel: 'warning',
})
