import type { CallerAllowEntry, DownstreamApiConfig, SidecarConfig } from './types.ts'
import { defaults, envDefaults, identityNamePattern } from './defaults.ts'
import { logLevels, type RawFile } from './schema.ts'
import { isLoopbackHost, normalizeUrl, urlProblem } from './urls.ts'
import type { ConfigPath, PathIssue } from './path.ts'
import type { ValidFile } from './validate.ts'
import { resolveCallerAllow } from './callers-allow.ts'
import { resolveIdentities } from './resolve-identity.ts'

export interface ResolveContext {
  source: string | undefined
  env: NodeJS.ProcessEnv
  /** passwd(5) file for `callers.allow[].user`; /etc/passwd when absent. */
  passwdFile?: string | undefined
  /** The platform `callers.allow` is checked against; process.platform when absent. */
  platform?: NodeJS.Platform | undefined
}

export type Resolution = { ok: true; config: SidecarConfig } | { ok: false; issues: PathIssue[] }

/**
 * Applies defaults and the rules that span several keys, section by section; each failure says why
 * the combination cannot work. Every step records its issues, so one run reports them all.
 */
export function resolveConfig(valid: ValidFile, context: ResolveContext): Resolution {
  const issues: PathIssue[] = []
  const { file } = valid
  const listen = resolveListen(file.listen, issues)
  const upstream = resolveUpstream(file.upstream, context.env, issues)
  const log = { level: resolveLogLevel(file.log, context.env, issues) }
  const identities = resolveIdentities(valid.identities, upstream.authorityHost, issues)
  const names = valid.identities?.map((identity) => identity.name) ?? [defaults.identityName]
  const defaultIdentity = resolveDefaultIdentity(file.defaultIdentity, names, issues)
  const downstreamApis = resolveDownstreamApis(file.downstreamApis, defaultIdentity, names, issues)
  const allow =
    file.callers?.allow === undefined
      ? undefined
      : resolveCallerAllow(
          file.callers.allow,
          {
            identities: names,
            passwdFile: context.passwdFile,
            platform: context.platform,
          },
          issues,
        )
  if (issues.length > 0 || defaultIdentity === undefined) return { ok: false, issues }
  return {
    ok: true,
    config: {
      source: context.source,
      listen,
      callers: resolveCallers(file.callers, allow),
      upstream,
      cache: { maxTokens: file.cache?.maxTokens ?? defaults.maxTokens },
      log,
      shutdownGraceMs: file.shutdownGraceMs ?? defaults.shutdownGraceMs,
      defaultIdentity,
      identities,
      downstreamApis,
      compat: { agentIdSidecar: file.compat?.agentIdSidecar ?? false },
    },
  }
}

/** `listen`: loopback unless `allowNonLoopback` says otherwise; the ops listener may be anywhere. */
function resolveListen(listen: RawFile['listen'], issues: PathIssue[]): SidecarConfig['listen'] {
  const host = bareHost(listen?.host ?? defaults.listenHost)
  const allowNonLoopback = listen?.allowNonLoopback ?? false
  if (!allowNonLoopback && !isLoopbackHost(host)) {
    issues.push({
      path: ['listen', 'host'],
      message: `${host} is not a loopback address (127.0.0.0/8, ::1, localhost): every host that can reach it could take tokens; set listen.allowNonLoopback: true if that is really intended`,
    })
  }
  return {
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
  }
}

/** `callers`: the header and key defaults, and the resolved `allow` list when there is one. */
function resolveCallers(
  callers: RawFile['callers'],
  allow: CallerAllowEntry[] | undefined,
): SidecarConfig['callers'] {
  return {
    requireMetadataHeader: callers?.requireMetadataHeader ?? true,
    ...(callers?.secretFile === undefined ? {} : { secretFile: callers.secretFile }),
    exposePrivateKey: callers?.exposePrivateKey ?? true,
    ...(allow === undefined ? {} : { allow }),
  }
}

/** `upstream`: the IMDS endpoint may come from `AZURE_POD_IDENTITY_AUTHORITY_HOST`; URLs normalized. */
function resolveUpstream(
  upstream: RawFile['upstream'],
  env: NodeJS.ProcessEnv,
  issues: PathIssue[],
): SidecarConfig['upstream'] {
  const imdsEndpoint = fromEnvOrDefault(
    upstream?.imdsEndpoint,
    envDefaults.imdsEndpoint,
    defaults.imdsEndpoint,
    env,
    (value) => urlProblem(value),
    ['upstream', 'imdsEndpoint'],
    issues,
  )
  return {
    imdsEndpoint: normalizeUrl(imdsEndpoint),
    authorityHost: normalizeUrl(upstream?.authorityHost ?? defaults.authorityHost),
    ...(upstream?.caFile === undefined ? {} : { caFile: upstream.caFile }),
    timeoutMs: upstream?.timeoutMs ?? defaults.timeoutMs,
    requestDeadlineMs: upstream?.requestDeadlineMs ?? defaults.requestDeadlineMs,
  }
}

/** `log.level`, else `CREDENTIAL_SIDECAR_LOG_LEVEL`, else the default. */
function resolveLogLevel(log: RawFile['log'], env: NodeJS.ProcessEnv, issues: PathIssue[]): string {
  return fromEnvOrDefault(
    log?.level,
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
}

/** Absent: an identity named "mi" (the contract's convention), else the first in file order. */
function resolveDefaultIdentity(
  named: string | undefined,
  names: readonly string[],
  issues: PathIssue[],
): string | undefined {
  if (named === undefined) return names.includes(defaults.identityName) ? defaults.identityName : names[0]
  if (!names.includes(named)) {
    issues.push({
      path: ['defaultIdentity'],
      message: `no identity is named "${named}" (configured: ${names.join(', ')})`,
    })
  }
  return named
}

/** `downstreamApis`: each names an existing identity (else the default one). */
function resolveDownstreamApis(
  raw: RawFile['downstreamApis'],
  defaultIdentity: string | undefined,
  names: readonly string[],
  issues: PathIssue[],
): Map<string, DownstreamApiConfig> {
  const downstreamApis = new Map<string, DownstreamApiConfig>()
  for (const [name, api] of Object.entries(raw ?? {})) {
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
  return downstreamApis
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

/**
 * `[::1]` as a URL writes it is `::1` to listen on: the brackets are URL syntax, and Node's
 * `listen` would look `[::1]` up as a host name (ENOTFOUND) after the loopback rule accepted it.
 */
function bareHost(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
}
