// Evaluated before any other module of the SDK (it is the entries' first import, and imports
// nothing): on an older Node.js the SDK fails here, with one line naming both versions, instead of
// somewhere inside a later module. Keep it so. No module of the SDK may import a name a supported-
// but-old Node.js lacks (`import { getCACertificates } from 'node:tls'` fails to link on Node 20
// before any code runs), which is why newer builtins are reached through namespace imports.

/** The oldest Node.js the SDK runs on: `tls.getCACertificates` came in 22.15. Same as `engines.node`. */
export const requiredNode = { major: 22, minor: 15 } as const

/**
 * Throws when `version` (`process.versions.node` form, `22.15.0`) is older than {@link requiredNode}.
 *
 * @example
 * ```ts
 * assertSupportedNode('20.20.2') // throws: credential-sidecar-client requires Node.js 22.15 or later; this is Node.js 20.20.2
 * ```
 */
export function assertSupportedNode(version: string): void {
  const [major = 0, minor = 0] = version.split('.').map(Number)
  if (major > requiredNode.major || (major === requiredNode.major && minor >= requiredNode.minor)) return
  throw new Error(
    `credential-sidecar-client requires Node.js ${requiredNode.major}.${requiredNode.minor} or later; this is Node.js ${version}`,
  )
}

assertSupportedNode(process.versions.node)
