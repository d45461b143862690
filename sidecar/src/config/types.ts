/**
 * The resolved, validated configuration. `config/load.ts` turns YAML into this; everything else
 * trusts these types. Vocabulary follows Microsoft.Identity.Web (contract §2).
 */
export type ProtocolScheme = 'Bearer' | 'MTLS_POP'

export type ManagedIdentitySelector =
  | { kind: 'system' }
  | { kind: 'clientId'; value: string }
  | { kind: 'objectId'; value: string }
  | { kind: 'resourceId'; value: string }

interface IdentityCommon {
  name: string
  protocolScheme: ProtocolScheme
  /** Acquire the credential at start; /readyz waits for it. */
  warm: boolean
  /** Also fetch one token for this resource at start. */
  warmResource?: string
  /** When MTLS_POP was asked for and Entra answers Bearer: serve it (logged, counted) instead of failing. */
  allowBearerFallback: boolean
  /** Client capabilities announced upstream (`cp1` = CAE-capable): xms_cc / the claims parameter. */
  clientCapabilities: readonly string[]
}

export interface ManagedIdentityConfig extends IdentityCommon {
  kind: 'managedIdentity'
  selector: ManagedIdentitySelector
  /** With Bearer: get a bound Bearer token over the IMDS v2 certificate instead of IMDS v1. */
  useBoundCredential: boolean
  /** Optional 0600 file that keeps the IMDS v2 binding key and certificate across restarts. */
  bindingStore?: string
}

export type CertificateSource =
  | {
      sourceType: 'Path'
      certificateDiskPath: string
      certificatePassword?: string
      useBoundCredential: boolean
    }
  | {
      sourceType: 'Base64Encoded'
      base64EncodedValue: string
      certificatePassword?: string
      useBoundCredential: boolean
    }

export type ClientCredentialConfig =
  | CertificateSource
  | {
      sourceType: 'SignedAssertionFromManagedIdentity'
      /** User-assigned managed identity for leg 1; system-assigned when absent. */
      managedIdentityClientId?: string
      tokenExchangeUrl: string
      useBoundCredential: boolean
    }
  | { sourceType: 'SignedAssertionFilePath'; signedAssertionFileDiskPath: string }
  | { sourceType: 'ClientSecret'; clientSecret: string }

export type ClientCredentialSourceType = ClientCredentialConfig['sourceType']

export interface ConfidentialClientConfig extends IdentityCommon {
  kind: 'confidentialClient'
  tenantId: string
  clientId: string
  /** Authority host for this identity, e.g. https://login.microsoftonline.com (defaults to upstream.authorityHost). */
  authorityHost: string
  azureRegion?: string
  /** Send the x5c header in certificate client assertions (subject-name/issuer auth). */
  sendX5C: boolean
  clientCredentials: ClientCredentialConfig[]
}

export type IdentityConfig = ManagedIdentityConfig | ConfidentialClientConfig

export interface DownstreamApiConfig {
  name: string
  baseUrl: string
  identity: string
  scopes: string[]
}

/** One `callers.allow` entry: a local uid and the identities it may use, in the order listed. */
export interface CallerAllowEntry {
  uid: number
  /** The user name the entry was written with (`user:`), for messages; absent for `uid:`. */
  user?: string
  identities: string[]
}

export interface SidecarConfig {
  /** Where this config came from (file path), for messages. */
  source: string | undefined
  listen: {
    host: string
    port: number
    socket?: string
    allowNonLoopback: boolean
    /** Second listener for /healthz, /readyz and /metrics only (never a token route). */
    ops?: { host: string; port: number }
  }
  callers: {
    requireMetadataHeader: boolean
    secretFile?: string
    exposePrivateKey: boolean
    /** Which local uid may use which identities; absent = every caller that passes the other checks. */
    allow?: CallerAllowEntry[]
  }
  upstream: {
    imdsEndpoint: string
    authorityHost: string
    caFile?: string
    timeoutMs: number
    requestDeadlineMs: number
  }
  cache: { maxTokens: number }
  log: { level: string }
  shutdownGraceMs: number
  defaultIdentity: string
  /** In file order. */
  identities: Map<string, IdentityConfig>
  downstreamApis: Map<string, DownstreamApiConfig>
  compat: {
    /** Serve the Entra SDK for AgentID container's app-token routes (contract §3). */
    agentIdSidecar: boolean
  }
}
