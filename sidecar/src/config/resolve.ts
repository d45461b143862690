import type {
  ClientCredentialConfig,
  ConfidentialClientConfig,
  DownstreamApiConfig,
  IdentityConfig,
  ManagedIdentityConfig,
  ManagedIdentitySelector,
  SidecarConfig,
} from './types.ts'
import { defaults, envDefaults, identityNamePattern } from './defaults.ts'
import {
  logLevels,
  userAssignedSelectors,
  type RawConfidentialClient,
  type RawCredential,
  type RawManagedIdentity,
} from './schema.ts'
import { isLoopbackHost, normalizeUrl, urlProblem } from './urls.ts'
import type { ConfigPath, PathIssue } from './path.ts'
import type { RawIdentity, ValidFile } from './validate.ts'
import { resolveCallerAllow } from './callers-allow.ts'

export interface ResolveContext {
  source: string | undefined
  env: NodeJS.ProcessEnv
  /** passwd(5) file for `callers.allow[].user`; /etc/passwd when absent. */
  passwdFile?: string | undefined
  /** The platform `callers.allow` is checked against; process.platform when absent. */
  platform?: NodeJS.Platform | undefined
}

export type Resolution = { ok: true; config: SidecarConfig } | { ok: false; issues: PathIssue[] }

/** Applies defaults and the rules that span several keys; each failure says why the combination cannot work. */
export function resolveConfig(valid: ValidFile, context: ResolveContext): Resolution {
  const issues: PathIssue[] = []
  const { file } = valid
  const env = context.env

  const host = bareHost(file.listen?.host ?? defaults.listenHost)
  const allowNonLoopback = file.listen?.allowNonLoopback ?? false
  if (!allowNonLoopback && !isLoopbackHost(host)) {
    issues.push({
      path: ['listen', 'host'],
      message: `${host} is not a loopback address (127.0.0.0/8, ::1, localhost): every host that can reach it could take tokens; set listen.allowNonLoopback: true if that is really intended`,
    })
  }

  const authorityHost = normalizeUrl(file.upstream?.authorityHost ?? defaults.authorityHost)
  const imdsEndpoint = fromEnvOrDefault(
    file.upstream?.imdsEndpoint,
    envDefaults.imdsEndpoint,
    defaults.imdsEndpoint,
    env,
    (value) => urlProblem(value),
    ['upstream', 'imdsEndpoint'],
    issues,
  )
  const logLevel = fromEnvOrDefault(
    file.log?.level,
    envDefaults.logLevel,
    defaults.logLevel,
    env,
    (value) =>
      (logLevels as readonly string[]).includes(value)
        ? undefined
        : `expected one of ${logLevels.join(', ')}`,
    ['log', 'level'],
    issues,
  )

  const identities = new Map<string, IdentityConfig>()
  if (valid.identities === undefined) {
    identities.set(defaults.identityName, defaultManagedIdentity())
  } else if (valid.identities.length === 0) {
    issues.push({
      path: ['identities'],
      message: `define at least one identity, or leave the section out for the system-assigned managed identity "${defaults.identityName}"`,
    })
  }
  for (const identity of valid.identities ?? []) {
    const resolved = resolveIdentity(identity, authorityHost, issues)
    if (resolved) identities.set(identity.name, resolved)
  }
  const names = valid.identities?.map((identity) => identity.name) ?? [defaults.identityName]

  let defaultIdentity = file.defaultIdentity
  if (defaultIdentity === undefined) {
    // Absent: an identity named "mi" (the contract's convention), else the first in file order.
    defaultIdentity = names.includes(defaults.identityName) ? defaults.identityName : names[0]
  } else if (!names.includes(defaultIdentity)) {
    issues.push({
      path: ['defaultIdentity'],
      message: `no identity is named "${defaultIdentity}" (configured: ${names.join(', ')})`,
    })
  }

  const downstreamApis = new Map<string, DownstreamApiConfig>()
  for (const [name, api] of Object.entries(file.downstreamApis ?? {})) {
    const path = ['downstreamApis', name]
    // The name is a URL path segment (/downstream/{api}/…), so it follows the identity name rule.
    if (!identityNamePattern.test(name)) {
      issues.push({
        path,
        message: `invalid name: use letters, digits, "_", "." and "-", starting with a letter or digit`,
      })
    }
    const identity = api.identity ?? defaultIdentity
    if (identity !== undefined && !names.includes(identity)) {
      issues.push({
        path: api.identity === undefined ? path : [...path, 'identity'],
        message: `no identity is named "${identity}" (configured: ${names.join(', ')})`,
      })
    }
    if (identity === undefined) continue
    downstreamApis.set(name, { name, baseUrl: normalizeUrl(api.baseUrl), identity, scopes: api.scopes })
  }

  const allow =
    file.callers?.allow === undefined
      ? undefined
      : resolveCallerAllow(
          file.callers.allow,
          {
            identities: names,
            socket: file.listen?.socket,
            passwdFile: context.passwdFile,
            platform: context.platform,
          },
          issues,
        )

  if (issues.length > 0 || defaultIdentity === undefined) return { ok: false, issues }

  const { listen, callers, upstream } = file
  return {
    ok: true,
    config: {
      source: context.source,
      listen: {
        host,
        port: listen?.port ?? defaults.listenPort,
        ...(listen?.socket === undefined ? {} : { socket: listen.socket }),
        allowNonLoopback,
        backlog: listen?.backlog ?? defaults.listenBacklog,
        ...(listen?.ops === undefined
          ? {}
          : {
              ops: {
                host: bareHost(listen.ops.host ?? defaults.opsHost),
                port: listen.ops.port ?? defaults.opsPort,
              },
            }),
      },
      callers: {
        requireMetadataHeader: callers?.requireMetadataHeader ?? true,
        ...(callers?.secretFile === undefined ? {} : { secretFile: callers.secretFile }),
        exposePrivateKey: callers?.exposePrivateKey ?? true,
        ...(allow === undefined ? {} : { allow }),
      },
      upstream: {
        imdsEndpoint: normalizeUrl(imdsEndpoint),
        authorityHost,
        ...(upstream?.caFile === undefined ? {} : { caFile: upstream.caFile }),
        timeoutMs: upstream?.timeoutMs ?? defaults.timeoutMs,
        requestDeadlineMs: upstream?.requestDeadlineMs ?? defaults.requestDeadlineMs,
      },
      cache: { maxTokens: file.cache?.maxTokens ?? defaults.maxTokens },
      log: { level: logLevel },
      shutdownGraceMs: file.shutdownGraceMs ?? defaults.shutdownGraceMs,
      defaultIdentity,
      identities,
      downstreamApis,
      compat: { agentIdSidecar: file.compat?.agentIdSidecar ?? false },
    },
  }
}

/** The identity a config without `identities` gets. */
export function defaultManagedIdentity(): ManagedIdentityConfig {
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

/** The file's value wins; then the environment variable (checked, since no file position vouches for it); then the default. */
function fromEnvOrDefault(
  fileValue: string | undefined,
  variable: string,
  fallback: string,
  env: NodeJS.ProcessEnv,
  problemOf: (value: string) => string | undefined,
  path: ConfigPath,
  issues: PathIssue[],
): string {
  if (fileValue !== undefined) return fileValue
  const fromEnv = env[variable]
  if (fromEnv === undefined || fromEnv === '') return fallback
  const problem = problemOf(fromEnv)
  if (problem !== undefined) {
    issues.push({ path, message: `environment variable ${variable} (used as the default): ${problem}` })
  }
  return fromEnv
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

/**
 * `[::1]` as a URL writes it is `::1` to listen on: the brackets are URL syntax, and Node's
 * `listen` would look `[::1]` up as a host name (ENOTFOUND) after the loopback rule accepted it.
 */
function bareHost(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
}
