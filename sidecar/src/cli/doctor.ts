import type { IdentityConfig, SidecarConfig } from '../config/types.ts'
import { buildCore } from '../daemon.ts'
import { silentLogger } from '../log.ts'
import { normaliseScope } from '../tokens/scope.ts'
import { probeImdsAsOtherUid, type LockdownProbe } from './imds-lockdown-probe.ts'

/** The resource doctor asks a token for when an identity names no warmResource. */
const probeResource = 'https://management.azure.com'

/**
 * Probes each identity's whole credential path (IMDS v1 or v2, Entra) the way the daemon would and
 * prints one line per step. Never prints a token, assertion or key. Exit 0 when every identity works.
 */
export async function runDoctor(
  config: SidecarConfig,
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  const { tokens, identities, runtime, closeIdentities } = buildCore({ config, logger: silentLogger() })
  out.write(
    `credential-sidecar doctor\n  IMDS endpoint: ${config.upstream.imdsEndpoint}\n  authority host: ${config.upstream.authorityHost}\n\n`,
  )
  let failures = 0
  for (const identity of identities.values()) {
    out.write(`${identity.name} (${describePath(identity.config)})\n`)
    const started = performance.now()
    try {
      const binding = await tokens.withDeadline(
        identity.currentBinding(AbortSignal.timeout(config.upstream.requestDeadlineMs)),
      )
      if (binding) {
        const hours = ((binding.notAfter - runtime.clock.now()) / 3600_000).toFixed(1)
        out.write(
          `  ok    credential: certificate x5t#S256=${binding.x5tS256}, ${hours} h left, key ${binding.keyProtection}\n`,
        )
      }
      const resource = identity.config.warmResource ?? probeResource
      const served = await tokens.getToken(identity, normaliseScope({ resource }))
      const minutes = Math.round((served.token.expiresOn - runtime.clock.now()) / 60_000)
      out.write(
        `  ok    token: ${served.token.tokenType} for ${resource}, expires in ${minutes} min (${Math.round(performance.now() - started)} ms)\n`,
      )
    } catch (error) {
      failures++
      out.write(`  FAIL  ${error instanceof Error ? error.message : String(error)}\n`)
    }
  }
  await closeIdentities()
  await runtime.dispatcher.close()
  const lockdown = lockdownLine(await probeImdsAsOtherUid(config.upstream.imdsEndpoint), config)
  out.write(`\nIMDS from another uid\n  ${lockdown.line}\n`)
  out.write(
    `\n${failures === 0 ? 'all identities work' : `${failures} identit${failures === 1 ? 'y' : 'ies'} failed`}\n`,
  )
  if (lockdown.failed) out.write('IMDS is not locked to the sidecar while callers.allow is set\n')
  return failures === 0 && !lockdown.failed ? 0 : 1
}

/**
 * Whether a process the sidecar would refuse can go to IMDS itself. A failure only with
 * callers.allow: without it every local caller may have every identity anyway.
 */
function lockdownLine(probe: LockdownProbe, config: SidecarConfig): { line: string; failed: boolean } {
  const guarded = config.callers.allow !== undefined
  switch (probe.kind) {
    case 'unknown':
      return { line: `?     cannot tell: ${probe.reason}`, failed: false }
    case 'unreachable':
      return {
        line: `ok    uid ${probe.uid} cannot reach ${config.upstream.imdsEndpoint} (${probe.detail}): IMDS is locked to the sidecar`,
        failed: false,
      }
    case 'reachable':
      return {
        line:
          `${guarded ? 'FAIL' : 'note'}  uid ${probe.uid} can reach ${config.upstream.imdsEndpoint}: ` +
          (guarded
            ? 'a process that callers.allow refuses can ask IMDS itself; '
            : 'any local process can ask IMDS itself; ') +
          'see README "Locking IMDS to the sidecar" (deploy/nftables/imds-lockdown.nft)',
        failed: guarded,
      }
  }
}

function describePath(config: IdentityConfig): string {
  if (config.kind === 'managedIdentity') {
    const bound = config.protocolScheme === 'MTLS_POP' || config.useBoundCredential
    return `managed identity, ${config.protocolScheme}, ${bound ? 'IMDS v2 + Entra mTLS' : 'IMDS v1'}`
  }
  return `confidential client ${config.clientId}, ${config.protocolScheme}, credentials: ${config.clientCredentials.map((c) => c.sourceType).join(' > ')}`
}
