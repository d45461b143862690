import type { IdentityConfig, SidecarConfig } from '../config/types.ts'
import { buildCore } from '../daemon.ts'
import { silentLogger } from '../log.ts'
import { normaliseScope } from '../tokens/scope.ts'

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
  const { tokens, identities, runtime, closeIdentities } = await buildCore({ config, logger: silentLogger() })
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
  out.write(
    `\n${failures === 0 ? 'all identities work' : `${failures} identit${failures === 1 ? 'y' : 'ies'} failed`}\n`,
  )
  return failures === 0 ? 0 : 1
}

function describePath(config: IdentityConfig): string {
  if (config.kind === 'managedIdentity') {
    const bound = config.protocolScheme === 'MTLS_POP' || config.useBoundCredential
    return `managed identity, ${config.protocolScheme}, ${bound ? 'IMDS v2 + Entra mTLS' : 'IMDS v1'}`
  }
  return `confidential client ${config.clientId}, ${config.protocolScheme}, credentials: ${config.clientCredentials.map((c) => c.sourceType).join(' > ')}`
}
