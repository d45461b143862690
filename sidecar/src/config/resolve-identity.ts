import type {
  ClientCredentialConfig,
  ConfidentialClientConfig,
  IdentityConfig,
  ManagedIdentityConfig,
  ManagedIdentitySelector,
} from './types.ts'
import { defaults, identityNamePattern } from './defaults.ts'
import {
  userAssignedSelectors,
  type RawConfidentialClient,
  type RawCredential,
  type RawManagedIdentity,
} from './schema.ts'
import { normalizeUrl } from './urls.ts'
import type { ConfigPath, PathIssue } from './path.ts'
import type { RawIdentity } from './validate.ts'

/**
 * The `identities` section: each identity with its defaults and the rules that span its keys, in
 * file order; without the section, the system-assigned managed identity. An identity with an
 * issue is left out (the issue says why).
 */
export function resolveIdentities(
  raw: readonly RawIdentity[] | undefined,
  authorityHost: string,
  issues: PathIssue[],
): Map<string, IdentityConfig> {
  const identities = new Map<string, IdentityConfig>()
  if (raw === undefined) {
    identities.set(defaults.identityName, defaultManagedIdentity())
    return identities
  }
  if (raw.length === 0) {
    issues.push({
      path: ['identities'],
      message: `define at least one identity, or leave the section out for the system-assigned managed identity "${defaults.identityName}"`,
    })
  }
  for (const identity of raw) {
    const resolved = resolveIdentity(identity, authorityHost, issues)
    if (resolved) identities.set(identity.name, resolved)
  }
  return identities
}

/** The identity a config without `identities` gets. */
function defaultManagedIdentity(): ManagedIdentityConfig {
  return {
    kind: 'managedIdentity',
    name: defaults.identityName,
    selector: { kind: 'system' },
    protocolScheme: 'Bearer',
    useBoundCredential: false,
    warm: false,
    allowBearerFallback: false,
    clientCapabilities: [],
  }
}

function resolveIdentity(
  identity: RawIdentity,
  authorityHost: string,
  issues: PathIssue[],
): IdentityConfig | undefined {
  const path = ['identities', identity.name]
  if (!identityNamePattern.test(identity.name)) {
    issues.push({
      path,
      message: 'invalid name: use letters, digits, "_", "." and "-", starting with a letter or digit',
    })
  }
  return identity.kind === 'managedIdentity'
    ? resolveManagedIdentity(identity.name, identity.raw, path, issues)
    : resolveConfidentialClient(identity.name, identity.raw, authorityHost, path, issues)
}

function common(name: string, raw: RawManagedIdentity | RawConfidentialClient) {
  return {
    name,
    protocolScheme: raw.protocolScheme ?? 'Bearer',
    warm: raw.warm ?? false,
    ...(raw.warmResource === undefined ? {} : { warmResource: raw.warmResource }),
    allowBearerFallback: raw.allowBearerFallback ?? false,
    clientCapabilities: [...new Set(raw.clientCapabilities ?? [])],
  } as const
}

function resolveManagedIdentity(
  name: string,
  raw: RawManagedIdentity,
  path: ConfigPath,
  issues: PathIssue[],
): ManagedIdentityConfig | undefined {
  const selectors = userAssignedSelectors.filter((key) => raw.managedIdentity[key] !== undefined)
  if (selectors.length > 1) {
    issues.push({
      path: [...path, 'managedIdentity', selectors[1] ?? ''],
      message: `set only one of ${userAssignedSelectors.join(', ')}: each names a user-assigned identity on its own, so two could disagree (found ${selectors.join(' and ')})`,
    })
    return undefined
  }
  return {
    kind: 'managedIdentity',
    ...common(name, raw),
    selector: selectorOf(raw.managedIdentity),
    useBoundCredential: raw.useBoundCredential ?? false,
    ...(raw.bindingStore === undefined ? {} : { bindingStore: raw.bindingStore }),
  }
}

function selectorOf(raw: RawManagedIdentity['managedIdentity']): ManagedIdentitySelector {
  if (raw.userAssignedClientId !== undefined) return { kind: 'clientId', value: raw.userAssignedClientId }
  if (raw.userAssignedObjectId !== undefined) return { kind: 'objectId', value: raw.userAssignedObjectId }
  if (raw.userAssignedResourceId !== undefined)
    return { kind: 'resourceId', value: raw.userAssignedResourceId }
  return { kind: 'system' }
}

const unbindableReason = {
  ClientSecret: 'a client secret',
  SignedAssertionFilePath: 'a projected token file',
} as const

function resolveConfidentialClient(
  name: string,
  raw: RawConfidentialClient,
  upstreamAuthorityHost: string,
  path: ConfigPath,
  issues: PathIssue[],
): ConfidentialClientConfig | undefined {
  const before = issues.length
  if (raw.instance !== undefined && raw.authorityHost !== undefined) {
    issues.push({
      path: [...path, 'authorityHost'],
      message: 'set either instance or authorityHost, not both: they name the same authority host',
    })
  }
  raw.clientCredentials.forEach((credential, index) => {
    if (credential.sourceType in unbindableReason && credential.useBoundCredential !== undefined) {
      const what = unbindableReason[credential.sourceType as keyof typeof unbindableReason]
      issues.push({
        path: [...path, 'clientCredentials', index, 'useBoundCredential'],
        message: `${credential.sourceType} cannot bind: ${what} has no certificate to present over mTLS (remove useBoundCredential)`,
      })
    }
  })
  const canBind = raw.clientCredentials.some((credential) => !(credential.sourceType in unbindableReason))
  if (raw.protocolScheme === 'MTLS_POP' && !canBind) {
    issues.push({
      path: [...path, 'protocolScheme'],
      message:
        'MTLS_POP needs a credential that can bind to a certificate (Path, Base64Encoded or SignedAssertionFromManagedIdentity); ClientSecret and SignedAssertionFilePath have no certificate to present over mTLS',
    })
  }
  if (issues.length > before) return undefined
  return {
    kind: 'confidentialClient',
    ...common(name, raw),
    tenantId: raw.tenantId,
    clientId: raw.clientId,
    authorityHost: normalizeUrl(raw.instance ?? raw.authorityHost ?? upstreamAuthorityHost),
    ...(raw.azureRegion === undefined ? {} : { azureRegion: raw.azureRegion }),
    sendX5C: raw.sendX5C ?? false,
    clientCredentials: raw.clientCredentials.map(resolveCredential),
  }
}

function resolveCredential(raw: RawCredential): ClientCredentialConfig {
  switch (raw.sourceType) {
    case 'Path':
      return {
        sourceType: 'Path',
        certificateDiskPath: raw.certificateDiskPath,
        ...(raw.certificatePassword === undefined ? {} : { certificatePassword: raw.certificatePassword }),
        useBoundCredential: raw.useBoundCredential ?? false,
      }
    case 'Base64Encoded':
      return {
        sourceType: 'Base64Encoded',
        base64EncodedValue: raw.base64EncodedValue,
        ...(raw.certificatePassword === undefined ? {} : { certificatePassword: raw.certificatePassword }),
        useBoundCredential: raw.useBoundCredential ?? false,
      }
    case 'SignedAssertionFromManagedIdentity':
      return {
        sourceType: 'SignedAssertionFromManagedIdentity',
        ...(raw.managedIdentityClientId === undefined
          ? {}
          : { managedIdentityClientId: raw.managedIdentityClientId }),
        tokenExchangeUrl: raw.tokenExchangeUrl ?? defaults.tokenExchangeUrl,
        useBoundCredential: raw.useBoundCredential ?? false,
      }
    case 'SignedAssertionFilePath':
      return {
        sourceType: 'SignedAssertionFilePath',
        signedAssertionFileDiskPath: raw.signedAssertionFileDiskPath,
      }
    case 'ClientSecret':
      return { sourceType: 'ClientSecret', clientSecret: raw.clientSecret }
  }
}
