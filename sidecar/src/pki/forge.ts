import { createRequire } from 'node:module'
import type forge from 'node-forge'

const require = createRequire(import.meta.url)

/**
 * node-forge, loaded on first use instead of at start: only PKCS#12 files and IMDS v2 CSRs need it,
 * and loading it up front cost every daemon start time and resident memory (issue 11).
 */
export function nodeForge(): typeof forge {
  return require('node-forge') as typeof forge
}

/** Loads node-forge ahead of need (an identity that will build CSRs), so no request waits for it. */
export function preloadForge(): void {
  nodeForge()
}

/** An object whose properties are read from `load()` on first access, so importing costs nothing. */
export function lazyNamespace<T extends object>(load: () => T): T {
  return new Proxy({} as T, { get: (_target, key) => Reflect.get(load(), key) })
}
