import type { IdentityConfig, ManagedIdentityConfig, SidecarConfig } from '../config/types.ts'
import { ImdsV2BindingCredential } from '../credentials/imds-v2-binding.ts'
import { SoftwareKeyProvider, type KeyProvider } from '../pki/key-provider.ts'
import type { Runtime } from '../runtime.ts'
import { EntraTokenClient } from '../sources/entra/token-client.ts'
import { ImdsV1Client } from '../sources/imds-v1.ts'
import { ImdsV2Client } from '../sources/imds-v2.ts'
import type { Identity } from './identity.ts'
import { ManagedIdentityBearer } from './managed-identity-bearer.ts'
import { ManagedIdentityBound } from './managed-identity-bound.ts'

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
}

export function createIdentities(config: SidecarConfig, runtime: Runtime): IdentitySet {
  const sources: IdentitySources = {
    runtime,
    config,
    imdsV1: new ImdsV1Client({ runtime, imdsEndpoint: config.upstream.imdsEndpoint }),
    imdsV2: new ImdsV2Client({ runtime, imdsEndpoint: config.upstream.imdsEndpoint }),
    entra: new EntraTokenClient({ runtime }),
    keyProvider: new SoftwareKeyProvider(),
  }
  const identities = new Map<string, Identity>()
  for (const [name, identityConfig] of config.identities) identities.set(name, createIdentity(identityConfig, sources))
  return {
    identities,
    close: async () => {
      await Promise.all([...identities.values()].map((identity) => identity.close()))
      await sources.entra.close()
    },
  }
}

function createIdentity(config: IdentityConfig, sources: IdentitySources): Identity {
  if (config.kind === 'managedIdentity') {
    return usesImdsV2(config) ? managedIdentityBound(config, sources) : new ManagedIdentityBearer(config, sources.imdsV1)
  }
  throw new Error(`identity "${config.name}": confidential clients are not supported by this build yet`)
}

/** MTLS_POP, or a Bearer token over the bound credential, needs the IMDS v2 certificate. */
function usesImdsV2(config: ManagedIdentityConfig): boolean {
  return config.protocolScheme === 'MTLS_POP' || config.useBoundCredential
}

function managedIdentityBound(config: ManagedIdentityConfig, sources: IdentitySources): ManagedIdentityBound {
  const credential = new ImdsV2BindingCredential({
    client: sources.imdsV2,
    keyProvider: sources.keyProvider,
    selector: config.selector,
    runtime: sources.runtime,
    identity: config.name,
    ...(config.bindingStore === undefined ? {} : { bindingStorePath: config.bindingStore }),
  })
  return new ManagedIdentityBound(config, { credential, entra: sources.entra })
}
