import type {
  ClientCredentialConfig,
  ConfidentialClientConfig,
  ManagedIdentityConfig,
  SidecarConfig,
} from './types.ts'
import { configWarnings } from './warnings.ts'
import { describeSelector } from './describe-selector.ts'
import { isBoundCredential, servedTokenType, usesImdsV2 } from './token-scheme.ts'
import type { TokenType } from '../model/token.ts'

/**
 * The resolved config as `credential-sidecar check-config` prints it. Paths and URLs are shown;
 * secrets, passwords and inline certificates never are, only whether they are set.
 *
 * @example
 * console.log(describeConfig(await loadConfigFile('config.yaml')))
 */
export function describeConfig(config: SidecarConfig): string {
  const { listen, callers, upstream } = config
  const lines = [
    `config: ${config.source ?? '(none: from the environment, AZURE_* and CREDENTIAL_SIDECAR_*, and built-in defaults)'}`,
    `listen: http://${hostForUrl(listen.host)}:${listen.port}${listen.port === 0 ? ' (any free port)' : ''}` +
      (listen.allowNonLoopback ? ' (non-loopback allowed)' : '') +
      (listen.socket === undefined ? '' : `, unix socket ${listen.socket}`) +
      (listen.ops === undefined
        ? ''
        : `; ops (health, readiness, metrics only) http://${hostForUrl(listen.ops.host)}:${listen.ops.port}`),
    `callers: Metadata header ${callers.requireMetadataHeader ? 'required' : 'not required'}` +
      (callers.secretFile === undefined
        ? ', no caller secret'
        : `, X-IDENTITY-HEADER from ${callers.secretFile}`) +
      `, private keys ${callers.exposePrivateKey ? 'returned to callers' : 'kept in the sidecar (proxy mode only)'}`,
    ...allowLines(callers.allow),
    `upstream: IMDS ${upstream.imdsEndpoint}, authority ${upstream.authorityHost}` +
      (upstream.caFile === undefined ? '' : `, extra CA ${upstream.caFile}`) +
      `, attempt timeout ${upstream.timeoutMs} ms, request deadline ${upstream.requestDeadlineMs} ms`,
    `cache: up to ${config.cache.maxTokens} tokens; log level ${config.log.level}; shutdown grace ${config.shutdownGraceMs} ms`,
    `default identity: ${config.defaultIdentity}`,
    '',
    'identities:',
  ]
  for (const identity of config.identities.values()) {
    lines.push(`  ${identity.name}${identity.name === config.defaultIdentity ? ' (default)' : ''}`)
    const details =
      identity.kind === 'managedIdentity' ? managedIdentityLines(identity) : confidentialClientLines(identity)
    lines.push(...details.map((line) => `    ${line}`))
    lines.push(
      `    warm: ${identity.warm ? 'yes, /readyz waits for its credential' : 'no'}` +
        (identity.warmResource === undefined ? '' : `; token for ${identity.warmResource} at start`),
    )
    if (identity.allowBearerFallback)
      lines.push(
        '    allowBearerFallback: yes (serves Bearer when Entra refuses binding, AADSTS3921996, or answers Bearer to MTLS_POP)',
      )
    if (identity.clientCapabilities.length > 0)
      lines.push(
        `    clientCapabilities: ${identity.clientCapabilities.join(', ')} (continuous access evaluation)`,
      )
  }
  if (config.downstreamApis.size > 0) {
    lines.push('', 'downstream APIs:')
    for (const api of config.downstreamApis.values()) {
      lines.push(`  ${api.name}: ${api.baseUrl} as ${api.identity}, scopes ${api.scopes.join(' ')}`)
    }
  }
  const warnings = configWarnings(config)
  if (warnings.length > 0) lines.push('', 'warnings:', ...warnings.map((w) => `  ${w}`))
  return lines.join('\n') + '\n'
}

/** `callers.allow` as the guard applies it: the first identity is what the compat routes serve. */
function allowLines(allow: SidecarConfig['callers']['allow']): string[] {
  if (allow === undefined) return ['callers.allow: not set (every local caller may use every identity)']
  return [
    'callers.allow (local uid → identities; any other caller gets 403; IMDS/App Service routes serve the first):',
    ...allow.map(
      (entry) =>
        `  uid ${entry.uid}${entry.user === undefined ? '' : ` (${entry.user})`}: ${entry.identities.join(', ')}`,
    ),
  ]
}

function managedIdentityLines(identity: ManagedIdentityConfig): string[] {
  const lines = [
    `kind: managed identity (${describeSelector(identity.selector)})`,
    `scheme: ${identity.protocolScheme}, ${managedIdentityRoute(identity)}`,
  ]
  if (identity.bindingStore !== undefined) lines.push(`binding store: ${identity.bindingStore}`)
  return lines
}

/** Mirrors how sources pick the endpoint: only plain Bearer stays on IMDS v1. */
function managedIdentityRoute(identity: ManagedIdentityConfig): string {
  if (!usesImdsV2(identity)) return 'IMDS v1'
  return `IMDS v2 binding certificate + Entra mTLS (${identity.protocolScheme === 'MTLS_POP' ? 'mtls_pop' : 'bound Bearer'} tokens)`
}

function confidentialClientLines(identity: ConfidentialClientConfig): string[] {
  return [
    'kind: confidential client',
    `scheme: ${identity.protocolScheme}`,
    `tenant: ${identity.tenantId}`,
    `client id: ${identity.clientId}`,
    `authority: ${identity.authorityHost}/${identity.tenantId}` +
      (identity.azureRegion === undefined ? '' : `, region ${identity.azureRegion}`) +
      (identity.sendX5C ? ', sends x5c' : ''),
    'credentials (tried in order, the first that loads is used):',
    ...identity.clientCredentials.map(
      (credential, index) => `  ${index + 1}. ${credentialLine(credential, servedTokenType(identity))}`,
    ),
  ]
}

function credentialLine(credential: ClientCredentialConfig, served: TokenType): string {
  switch (credential.sourceType) {
    case 'Path':
      return `Path ${credential.certificateDiskPath}${passwordNote(credential.certificatePassword)}, ${bound(isBoundCredential(served, credential))}`
    case 'Base64Encoded':
      return `Base64Encoded base64EncodedValue: <set>${passwordNote(credential.certificatePassword)}, ${bound(isBoundCredential(served, credential))}`
    case 'SignedAssertionFromManagedIdentity':
      return (
        'SignedAssertionFromManagedIdentity from ' +
        (credential.managedIdentityClientId === undefined
          ? 'the system-assigned managed identity'
          : `managed identity ${credential.managedIdentityClientId}`) +
        `, audience ${credential.tokenExchangeUrl}, ` +
        (isBoundCredential(served, credential)
          ? 'bound (assertion + binding certificate over mTLS)'
          : 'unbound (assertion as client_assertion)')
      )
    case 'SignedAssertionFilePath':
      return `SignedAssertionFilePath ${credential.signedAssertionFileDiskPath}, unbound`
    case 'ClientSecret':
      return 'ClientSecret clientSecret: <set>, unbound'
  }
}

function passwordNote(password: string | undefined): string {
  return password === undefined ? '' : ', certificatePassword: <set>'
}

function bound(isBound: boolean): string {
  return isBound ? 'bound (presented over mTLS)' : 'unbound (client assertion)'
}

function hostForUrl(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host
}
