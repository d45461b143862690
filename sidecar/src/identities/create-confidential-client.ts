import type {
  ClientCredentialConfig,
  ConfidentialClientConfig,
  ManagedIdentitySelector,
} from '../config/types.ts'
import type { ImdsV2BindingCredential } from '../credentials/managed-identity/imds-v2-binding.ts'
import { ManagedIdentityAssertion } from '../credentials/federated/managed-identity-assertion.ts'
import { ImdsV1Source } from '../credentials/managed-identity/imds-v1-source.ts'
import { ImdsV2Source } from '../credentials/managed-identity/imds-v2-source.ts'
import type { Runtime } from '../core/runtime.ts'
import { authorityMtlsTokenEndpoint, authorityTokenEndpoint } from '../upstream/entra/mtls-endpoint.ts'
import type { EntraTokenClient } from '../upstream/entra/token-client.ts'
import type { ImdsV1Client } from '../upstream/imds/v1.ts'
import { AssertionFileCredential } from '../credentials/assertion-file.ts'
import { CertificateCredential } from '../credentials/certificate.ts'
import type { AppContext, CredentialSource } from '../credentials/source.ts'
import { ClientSecretCredential } from '../credentials/client-secret.ts'
import { CredentialChain } from './chain.ts'
import { FederatedCredential } from '../credentials/federated/federated.ts'
import { isBoundCredential, servedTokenType } from '../config/token-scheme.ts'
import { describeSelector } from '../config/describe-selector.ts'

/** The shared upstream clients an identity is built from (`IdentitySources`, made by `daemon/compose.ts`). */
export interface ConfidentialClientSources {
  runtime: Runtime
  imdsV1: ImdsV1Client
  entra: EntraTokenClient
  /** The IMDS v2 binding credential of a managed identity, shared by every identity that uses it. */
  bindingCredential(selector: ManagedIdentitySelector, identity: string): ImdsV2BindingCredential
}

/**
 * A confidential client's chain: its `clientCredentials` in order, each a credential source that
 * knows its own request shape — certificate (private_key_jwt or presented over mTLS), FIC from a
 * managed identity (bound or not), projected token file, client secret.
 */
export function confidentialClientChain(
  config: ConfidentialClientConfig,
  sources: ConfidentialClientSources,
): CredentialChain {
  const app: AppContext = {
    identityName: config.name,
    clientId: config.clientId,
    tenantId: config.tenantId,
    tokenEndpoint: authorityTokenEndpoint(config.authorityHost, config.tenantId),
    mtlsTokenEndpoint: authorityMtlsTokenEndpoint(config.authorityHost, config.tenantId, config.azureRegion),
    tokenType: servedTokenType(config),
    allowBearerFallback: config.allowBearerFallback,
    sendX5C: config.sendX5C,
    entra: sources.entra,
    runtime: sources.runtime,
  }
  const credentials = config.clientCredentials.map((credential, index) =>
    createCredential(app, credential, index, sources),
  )
  return CredentialChain.firstThatLoads(app, credentials)
}

function createCredential(
  app: AppContext,
  config: ClientCredentialConfig,
  index: number,
  sources: ConfidentialClientSources,
): CredentialSource {
  switch (config.sourceType) {
    case 'Path':
    case 'Base64Encoded':
      return new CertificateCredential(app, config, index)
    case 'SignedAssertionFromManagedIdentity': {
      const selector: ManagedIdentitySelector =
        config.managedIdentityClientId === undefined
          ? { kind: 'system' }
          : { kind: 'clientId', value: config.managedIdentityClientId }
      // MTLS_POP needs a certificate to bind the final token to; with FIC the only one is leg 1's,
      // so MTLS_POP gets a bound (IMDS v2) leg 1 even when useBoundCredential is false.
      const bound = isBoundCredential(app.tokenType, config)
      const target = { name: app.identityName, selector }
      const managedIdentity = bound
        ? new ImdsV2Source({
            ...target,
            // jwt-pop needs the cnf claim: no Bearer fallback on leg 1.
            tokenType: 'mtls_pop',
            allowBearerFallback: false,
            credential: sources.bindingCredential(selector, app.identityName),
            entra: sources.entra,
            imdsV1: sources.imdsV1,
            runtime: sources.runtime,
          })
        : new ImdsV1Source(target, sources.imdsV1)
      const leg1 = new ManagedIdentityAssertion({
        runtime: sources.runtime,
        identity: app.identityName,
        managedIdentity,
        tokenExchangeUrl: config.tokenExchangeUrl,
      })
      return new FederatedCredential(app, leg1, index, describeSelector(selector))
    }
    case 'SignedAssertionFilePath':
      return new AssertionFileCredential(app, config.signedAssertionFileDiskPath, index)
    case 'ClientSecret':
      return new ClientSecretCredential(app, config.clientSecret, index)
  }
}
