import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import type { Emulator } from '../../sidecar/src/emulator/emulator.ts'

const run = promisify(execFile)

/** npm as a user would run it: without the npm_* variables of the `npm test` this runs under. */
export function npm(args: string[], cwd: string) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)))
  return run('npm', args, { cwd, env, timeout: 240_000, maxBuffer: 16 * 1024 * 1024 })
}

/**
 * A config for an installed daemon wired to the emulator: `mi` (Bearer, IMDS v1, warm) and
 * `mi-pop` (MTLS_POP, IMDS v2 + Entra mTLS).
 */
export function emulatorConfigYaml(emulator: Emulator, caFile: string): string {
  return `listen:\n  port: 0\nupstream:\n  imdsEndpoint: ${emulator.imdsUrl}\n  authorityHost: ${emulator.entraUrl}\n  caFile: ${caFile}\nshutdownGraceMs: 2000\ndefaultIdentity: mi\nidentities:\n  mi:\n    managedIdentity: {}\n    warm: true\n  mi-pop:\n    managedIdentity: {}\n    protocolScheme: MTLS_POP\n`
}

/** The daemon at `url` serves `mi` a Bearer token and `mi-pop` an mtls_pop one. */
export async function assertServesBearerAndPop(url: string): Promise<void> {
  for (const [identity, tokenType] of [
    ['mi', 'Bearer'],
    ['mi-pop', 'mtls_pop'],
  ] as const) {
    const res = await fetch(`${url}/token?resource=https://management.azure.com&identity=${identity}`, {
      headers: { Metadata: 'true' },
    })
    assert.equal(res.status, 200, identity)
    const body = (await res.json()) as Record<string, unknown>
    assert.equal(body['token_type'], tokenType, identity)
  }
}
