import type { IdentityConfig, ManagedIdentityConfig, SidecarConfig } from '../config/types.ts'
import { ImdsV1Source } from '../credentials/managed-identity/imds-v1-source.ts'
import { ImdsV2Source } from '../credentials/managed-identity/imds-v2-source.ts'
import type { CredentialSource } from '../credentials/source.ts'
import { CredentialChain } from './chain.ts'
import type { ConfidentialClientSources, confidentialClientChain } from './create-confidential-client.ts'
import { Identity } from './identity.ts'
import type { TokenCache } from '../cache/token-cache.ts'
import { servedTokenType, usesImdsV2 } from '../config/token-scheme.ts'

/** The configured identities. */
export interface IdentitySet {
  /** In config order. */
  identities: Map<string, Identity>
  /** Closes every identity (the upstream clients they share are the composition root's to close). */
  close(): Promise<void>
}

/**
 * What identities are built from, made once per daemon by the composition root (`daemon/compose.ts`)
 * and shared by all identities: the upstream clients and the IMDS v2 binding credentials.
 */
export type IdentitySources = ConfidentialClientSources

/** Wires each configured identity to its credential chain and the shared token cache. */
export async function createIdentities(
  config: SidecarConfig,
  sources: IdentitySources,
  cache: TokenCache,
): Promise<IdentitySet> {
  // Confidential-client code (client assertions with jose, certificate files, PKCS#12) is loaded
  // only when the configuration has such an identity: a lean start for the managed-identity case.
  const confidential = [...config.identities.values()].some((i) => i.kind === 'confidentialClient')
    ? (await import('./create-confidential-client.ts')).confidentialClientChain
    : undefined
  const identities = new Map<string, Identity>()
  for (const [name, identityConfig] of config.identities)
    identities.set(name, createIdentity(identityConfig, sources, confidential, cache))
  return {
    identities,
    close: async () => {
      await Promise.all([...identities.values()].map((identity) => identity.close()))
    },
  }
}

function createIdentity(
  config: IdentityConfig,
  sources: IdentitySources,
  confidential: typeof confidentialClientChain | undefined,
  cache: TokenCache,
): Identity {
  const pipeline = { cache, runtime: sources.runtime }
  if (config.kind === 'managedIdentity')
    return new Identity(config, CredentialChain.of(managedIdentitySource(config, sources)), pipeline)
  if (!confidential) throw new Error('confidential-client support was not loaded')
  return new Identity(config, confidential(config, sources), pipeline)
}

function managedIdentitySource(config: ManagedIdentityConfig, sources: IdentitySources): CredentialSource {
  if (!usesImdsV2(config)) return new ImdsV1Source(config, sources.imdsV1)
  return new ImdsV2Source({
    name: config.name,
    selector: config.selector,
    tokenType: servedTokenType(config),
    allowBearerFallback: config.allowBearerFallback,
    credential: sources.bindingCredential(config.selector, config.name),
    entra: sources.entra,
    imdsV1: sources.imdsV1,
    runtime: sources.runtime,
  })
}
