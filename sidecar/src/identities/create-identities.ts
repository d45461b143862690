import type { IdentityConfig, SidecarConfig } from '../config/types.ts'
import type { Runtime } from '../runtime.ts'
import { ImdsV1Client } from '../sources/imds-v1.ts'
import type { Identity } from './identity.ts'
import { ManagedIdentityBearer } from './managed-identity-bearer.ts'

/** Builds one Identity per configured identity, in config order. */
export function createIdentities(config: SidecarConfig, runtime: Runtime): Map<string, Identity> {
  const imdsV1 = new ImdsV1Client({ runtime, imdsEndpoint: config.upstream.imdsEndpoint })
  const identities = new Map<string, Identity>()
  for (const [name, identityConfig] of config.identities) {
    identities.set(name, createIdentity(identityConfig, { imdsV1 }))
  }
  return identities
}

function createIdentity(config: IdentityConfig, sources: { imdsV1: ImdsV1Client }): Identity {
  if (config.kind === 'managedIdentity' && config.protocolScheme === 'Bearer' && !config.useBoundCredential) {
    return new ManagedIdentityBearer(config, sources.imdsV1)
  }
  throw new Error(`identity "${config.name}": this build does not support ${config.kind} with ${config.protocolScheme} yet`)
}
