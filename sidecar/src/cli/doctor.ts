import type { IdentityConfig, ManagedIdentitySelector, SidecarConfig } from '../config/types.ts'
import { buildCore } from '../daemon.ts'
import { silentLogger } from '../log.ts'
import { ImdsV2Client } from '../sources/imds-v2.ts'
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
  const { tokens, identities, runtime, closeIdentities } = buildCore({ config, logger: silentLogger() })
  out.write(
    `credential-sidecar doctor\n  IMDS endpoint: ${config.upstream.imdsEndpoint}\n  authority host: ${config.upstream.authorityHost}\n\n`,
  )
  // The probe is the one place where a 404 from getplatformmetadata means "no IMDS v2" at once;
  // the acquisition path retries it (MSAL's ImdsProbe vs Imds retry conditions).
  const imdsV2 = new ImdsV2Client({ runtime, imdsEndpoint: config.upstream.imdsEndpoint })
  let failures = 0
  for (const identity of identities.values()) {
    out.write(`${identity.name} (${describePath(identity.config)})\n`)
    const started = performance.now()
    try {
      const selector = imdsV2Selector(identity.config)
      if (selector) {
        await imdsV2.getPlatformMetadata(selector, AbortSignal.timeout(config.upstream.requestDeadlineMs), {
          probe: true,
        })
        out.write(`  ok    IMDS v2: getplatformmetadata answered\n`)
      }
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

/**
 * A managed identity served over IMDS v2 has no other path, so doctor probes it first. (A
 * confidential client's FIC leg 1 is one credential of a chain: its failure is reported by the
 * token step, which names the credential.)
 */
function imdsV2Selector(config: IdentityConfig): ManagedIdentitySelector | undefined {
  if (config.kind !== 'managedIdentity') return undefined
  return config.protocolScheme === 'MTLS_POP' || config.useBoundCredential ? config.selector : undefined
}

function describePath(config: IdentityConfig): string {
  if (config.kind === 'managedIdentity') {
    const bound = config.protocolScheme === 'MTLS_POP' || config.useBoundCredential
    return `managed identity, ${config.protocolScheme}, ${bound ? 'IMDS v2 + Entra mTLS' : 'IMDS v1'}`
  }
  return `confidential client ${config.clientId}, ${config.protocolScheme}, credentials: ${config.clientCredentials.map((c) => c.sourceType).join(' > ')}`
}
