import { ConfigError } from './errors.ts'
import { formatPath, pathKey, type ConfigPath, type PathIssue } from './path.ts'
import { resolveConfig } from './resolve.ts'
import type { SidecarConfig } from './types.ts'
import { validateFile } from './validate.ts'

/**
 * The variables that configure the daemon when it is given no config file (contract §1). The
 * `AZURE_*` ones are what every Azure workload already carries (AKS workload identity writes
 * `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_AUTHORITY_HOST`).
 */
export const environmentVariables = {
  clientId: 'AZURE_CLIENT_ID',
  tenantId: 'AZURE_TENANT_ID',
  federatedTokenFile: 'AZURE_FEDERATED_TOKEN_FILE',
  authorityHost: 'AZURE_AUTHORITY_HOST',
  listen: 'CREDENTIAL_SIDECAR_LISTEN',
  opsListen: 'CREDENTIAL_SIDECAR_OPS_LISTEN',
  secretFile: 'CREDENTIAL_SIDECAR_SECRET_FILE',
  protocolScheme: 'CREDENTIAL_SIDECAR_PROTOCOL_SCHEME',
} as const

/** How messages name a config that came from the environment (its `source` is undefined: no file). */
export const environmentSource = 'environment'

/**
 * Builds the config the environment describes, through the same schema and rules as a file, so a
 * bad value fails the same way; messages name the variable instead of a file position.
 *
 * - `AZURE_FEDERATED_TOKEN_FILE` + `AZURE_CLIENT_ID` + `AZURE_TENANT_ID`: confidential client `app`
 *   with a `SignedAssertionFilePath` credential (Kubernetes workload identity);
 * - else `AZURE_CLIENT_ID`: user-assigned managed identity `mi`;
 * - else the system-assigned managed identity `mi`.
 *
 * @throws {ConfigError} naming the variable and what is wrong with it.
 * @example
 * const config = configFromEnvironment(process.env)
 */
export function configFromEnvironment(env: NodeJS.ProcessEnv): SidecarConfig {
  const issues: PathIssue[] = []
  /** Which variable each value came from, by path key, so messages can name it. */
  const origins = new Map<string, string>()
  const read = (variable: string, path: ConfigPath): string | undefined => {
    const value = env[variable]
    if (value === undefined || value === '') return undefined
    origins.set(pathKey(path), variable)
    return value
  }

  const file: Record<string, unknown> = {}
  const listen: Record<string, unknown> = {}
  const main = read(environmentVariables.listen, ['listen'])
  if (main !== undefined)
    Object.assign(listen, hostPort(main, environmentVariables.listen, ['listen'], issues))
  const ops = read(environmentVariables.opsListen, ['listen', 'ops'])
  if (ops !== undefined)
    listen['ops'] = hostPort(ops, environmentVariables.opsListen, ['listen', 'ops'], issues)
  if (Object.keys(listen).length > 0) file['listen'] = listen
  const secretFile = read(environmentVariables.secretFile, ['callers', 'secretFile'])
  if (secretFile !== undefined) file['callers'] = { secretFile }

  const scheme = read(environmentVariables.protocolScheme, ['identities'])
  const clientId = env[environmentVariables.clientId] || undefined
  const tenantId = env[environmentVariables.tenantId] || undefined
  const tokenFile = env[environmentVariables.federatedTokenFile] || undefined
  const common = scheme === undefined ? {} : { protocolScheme: scheme }
  if (tokenFile !== undefined) {
    const missing = [
      ...(clientId === undefined ? [environmentVariables.clientId] : []),
      ...(tenantId === undefined ? [environmentVariables.tenantId] : []),
    ]
    if (missing.length > 0) {
      issues.push({
        path: ['identities', 'app'],
        message: `${environmentVariables.federatedTokenFile} is set (workload identity) but ${missing.join(' and ')} ${missing.length === 1 ? 'is' : 'are'} not: set both, or give a config file`,
      })
    }
    const authorityHost = read(environmentVariables.authorityHost, ['identities', 'app', 'authorityHost'])
    for (const [variable, key] of [
      [environmentVariables.clientId, 'clientId'],
      [environmentVariables.tenantId, 'tenantId'],
    ] as const)
      origins.set(pathKey(['identities', 'app', key]), variable)
    origins.set(
      pathKey(['identities', 'app', 'clientCredentials', 0, 'signedAssertionFileDiskPath']),
      environmentVariables.federatedTokenFile,
    )
    file['identities'] = {
      app: {
        tenantId: tenantId ?? '',
        clientId: clientId ?? '',
        ...(authorityHost === undefined ? {} : { authorityHost }),
        clientCredentials: [
          { sourceType: 'SignedAssertionFilePath', signedAssertionFileDiskPath: tokenFile },
        ],
        ...common,
      },
    }
  } else if (clientId !== undefined) {
    origins.set(
      pathKey(['identities', 'mi', 'managedIdentity', 'userAssignedClientId']),
      environmentVariables.clientId,
    )
    file['identities'] = { mi: { managedIdentity: { userAssignedClientId: clientId }, ...common } }
  } else {
    file['identities'] = { mi: { managedIdentity: {}, ...common } }
  }
  if (issues.length > 0) throw environmentError(issues, origins)

  const validation = validateFile({
    value: file,
    issues: [],
    syntaxIssues: [],
    wholeVariables: new Map(),
    locate: () => ({ line: 0, column: 0 }),
  })
  if (!validation.ok) throw environmentError(validation.issues, origins)
  const resolution = resolveConfig(validation.value, { source: undefined, env })
  if (!resolution.ok) throw environmentError(resolution.issues, origins)
  return resolution.config
}

/** `host:port`, `[::1]:port`; the host is required so nobody binds every interface by accident. */
function hostPort(
  value: string,
  variable: string,
  path: ConfigPath,
  issues: PathIssue[],
): { host: string; port: number } | undefined {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]\s]+):(\d{1,5})$/.exec(value)
  const port = Number(match?.[2])
  if (!match || port > 65535) {
    issues.push({
      path,
      message: `${variable}: expected host:port, e.g. 127.0.0.1:7780 or [::1]:7780 (port 0 = any free port)`,
    })
    return undefined
  }
  const host = match[1]!
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port }
}

function environmentError(issues: PathIssue[], origins: Map<string, string>): ConfigError {
  return new ConfigError(
    issues.map((issue) => {
      const variable = originOf(issue.path, origins)
      // Messages name the variable, never its value (AZURE_* values are not secrets, but stay uniform).
      const message =
        variable === undefined || issue.message.includes(variable)
          ? issue.message
          : `${issue.message} (from ${variable})`
      return { file: environmentSource, line: 0, column: 0, path: formatPath(issue.path), message }
    }),
  )
}

/** The variable behind a path or its nearest ancestor that came from one. */
function originOf(path: ConfigPath, origins: Map<string, string>): string | undefined {
  for (let length = path.length; length > 0; length--) {
    const variable = origins.get(pathKey(path.slice(0, length)))
    if (variable !== undefined) return variable
  }
  return undefined
}
