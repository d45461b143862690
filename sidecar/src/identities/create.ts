import type {
  IdentityConfig,
  ManagedIdentityConfig,
  ManagedIdentitySelector,
  SidecarConfig,
} from '../config/types.ts'
import { ImdsV2BindingCredential } from '../credentials/managed-identity/imds-v2-binding.ts'
import { selectorKey } from '../credentials/managed-identity/stored-binding.ts'
import { SoftwareKeyProvider, type KeyProvider } from '../pki/key-provider.ts'
import type { Runtime } from '../core/runtime.ts'
import { EntraTokenClient } from '../upstream/entra/token-client.ts'
import { ImdsV1Client } from '../upstream/imds/v1.ts'
import { ImdsV2Client } from '../upstream/imds/v2.ts'
import type { MtlsAgents } from '../upstream/tls.ts'
import { ImdsV1Source } from '../credentials/managed-identity/imds-v1-source.ts'
import { ImdsV2Source } from '../credentials/managed-identity/imds-v2-source.ts'
import type { CredentialSource } from '../credentials/source.ts'
import { CredentialChain } from './chain.ts'
import type { confidentialClientChain } from './create-confidential-client.ts'
import { Identity } from './identity.ts'
import type { TokenCache } from '../cache/token-cache.ts'
import { servedTokenType, usesImdsV2 } from '../config/token-scheme.ts'

/** The configured identities and the upstream clients they share. */
export interface IdentitySet {
  /** In config order. */
  identities: Map<string, Identity>
  /** Closes every identity and the shared clients. */
  close(): Promise<void>
}

/** What identities are built from; one instance per daemon, shared by all identities. */
export interface IdentitySources {
  runtime: Runtime
  config: SidecarConfig
  imdsV1: ImdsV1Client
  imdsV2: ImdsV2Client
  entra: EntraTokenClient
  keyProvider: KeyProvider
  /**
   * The IMDS v2 binding credential of one managed identity, shared by every identity that uses it
   * (a bound managed identity and an app's bound FIC leg 1 on the same VM identity hold one
   * certificate, not two).
   */
  bindingCredential(selector: ManagedIdentitySelector, identity: string): ImdsV2BindingCredential
}

export async function createIdentities(
  config: SidecarConfig,
  runtime: Runtime,
  mtlsAgents: MtlsAgents,
  cache: TokenCache,
): Promise<IdentitySet> {
  const imdsV2 = new ImdsV2Client({ runtime, imdsEndpoint: config.upstream.imdsEndpoint })
  const keyProvider = new SoftwareKeyProvider()
  const bindingStores = bindingStoresBySelector(config)
  const bindingCredentials = new Map<string, ImdsV2BindingCredential>()
  const sources: IdentitySources = {
    runtime,
    config,
    imdsV1: new ImdsV1Client({ runtime, imdsEndpoint: config.upstream.imdsEndpoint }),
    imdsV2,
    entra: new EntraTokenClient({ runtime, agents: mtlsAgents }),
    keyProvider,
    bindingCredential: (selector, identity) => {
      const key = selectorKey(selector)
      let credential = bindingCredentials.get(key)
      if (!credential) {
        const store = bindingStores.get(key)
        credential = new ImdsV2BindingCredential({
          client: imdsV2,
          keyProvider,
          selector,
          runtime,
          identity,
          ...(store === undefined ? {} : { bindingStorePath: store.path, bindingStoreKey: store.key }),
        })
        bindingCredentials.set(key, credential)
      }
      return credential
    },
  }
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
      // Idempotent: identities that use a shared credential have closed it already.
      await Promise.all([...bindingCredentials.values()].map((credential) => credential.close()))
      await sources.entra.close()
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

/**
 * A binding store belongs to the managed identity's certificate, so the first bound managed
 * identity in config order that names one gives it to everyone sharing that certificate.
 */
function bindingStoresBySelector(config: SidecarConfig): Map<string, { path: string; key: string }> {
  const stores = new Map<string, { path: string; key: string }>()
  for (const identity of config.identities.values()) {
    if (identity.kind !== 'managedIdentity' || identity.bindingStore === undefined || !usesImdsV2(identity))
      continue
    const key = selectorKey(identity.selector)
    if (!stores.has(key))
      stores.set(key, { path: identity.bindingStore, key: `identities.${identity.name}.bindingStore` })
  }
  return stores
}
