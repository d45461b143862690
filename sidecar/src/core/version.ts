import { readFileSync } from 'node:fs'

/**
 * The daemon's version, from its package.json. The relative path is the same from `src/` (the
 * repository) and `dist/` (an installed package), both one level below the package root.
 */
export function sidecarVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version?: string
  }
  return manifest.version ?? 'unknown'
}
