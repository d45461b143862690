import type { Dispatcher } from 'undici'
import { SystemClock, type Clock, type Random } from '../core/clock.ts'
import { createLogger, type Logger } from '../core/log.ts'
import { describeFileProblem, readCheckedFileSync, trustedFile } from '../core/trusted-file.ts'
import { Metrics } from '../core/metrics.ts'
import type { Runtime } from '../core/runtime.ts'
import { RetryAfterHints } from '../core/retry-after.ts'
import type { SidecarConfig } from '../config/types.ts'
import { MtlsAgents, trustingConnector } from '../upstream/tls.ts'
import { LazyAgent, readyDispatcher } from '../upstream/undici.ts'
import { createIdentities, type IdentitySources } from '../identities/create.ts'
import { ImdsV2BindingCredential } from '../credentials/managed-identity/imds-v2-binding.ts'
import { selectorKey } from '../credentials/managed-identity/stored-binding.ts'
import { usesImdsV2 } from '../config/token-scheme.ts'
import { SoftwareKeyProvider } from '../pki/key-provider.ts'
import { EntraTokenClient } from '../upstream/entra/token-client.ts'
import { ImdsV1Client } from '../upstream/imds/v1.ts'
import { ImdsV2Client } from '../upstream/imds/v2.ts'
import type { Identity } from '../identities/identity.ts'
import { TokenCache } from '../cache/token-cache.ts'
import { TokenService } from '../tokens/token-service.ts'
import { DownstreamProxy } from '../downstream/proxy.ts'
import type { AppDeps } from '../http/app.ts'
import type { CallerChecks } from '../http/caller-checks.ts'
import { AllowListAccess } from '../http/callers/caller-access.ts'
import { localHostPolicy } from '../http/callers/caller-guard.ts'
import { PeerUids } from '../http/callers/peer-uids.ts'
import { SocketTable } from '../http/callers/socket-table.ts'
import { Readiness } from '../http/readiness.ts'
import { SecretFile } from '../http/secret-file.ts'

export interface CoreOptions {
  config: SidecarConfig
  logger?: Logger
  clock?: Clock
  random?: Random
  /**
   * Outgoing HTTP for IMDS and Entra (closing it is the caller's job); default: an undici Agent
   * trusting upstream.caFile too, made by the first upstream call.
   */
  dispatcher?: Dispatcher
}

export interface Core {
  runtime: Runtime
  identities: Map<string, Identity>
  tokens: TokenService
  /** The one mTLS agent cache, shared by the Entra token client and the downstream proxy. */
  mtlsAgents: MtlsAgents
  /**
   * Stops the token service, closes identities and the upstream clients they share (the mTLS agent
   * cache last), then the dispatcher unless the caller passed its own.
   */
  close(): Promise<void>
}

/** Everything but the HTTP surface: shared by the daemon and `doctor`. */
export async function buildCore(options: CoreOptions): Promise<Core> {
  const { config } = options
  const runtime = createRuntime(options)
  const mtlsAgents = new MtlsAgents({ extraCaPem: runtime.extraCaPem })
  // One cache for every identity's slots, so cache.maxTokens bounds them all.
  const cache = new TokenCache({
    clock: runtime.clock,
    random: runtime.random,
    logger: runtime.logger,
    metrics: runtime.metrics,
    maxTokens: config.cache.maxTokens,
    ...(runtime.retryAfterHints ? { retryAfterHints: runtime.retryAfterHints } : {}),
  })
  const upstream = buildIdentitySources(config, runtime, mtlsAgents)
  const identitySet = await createIdentities(config, upstream.sources, cache)
  const identities = identitySet.identities
  const tokens = new TokenService({
    runtime,
    identities,
    defaultIdentity: config.defaultIdentity,
    requestDeadlineMs: config.upstream.requestDeadlineMs,
  })
  const close = async () => {
    tokens.close()
    await identitySet.close()
    await upstream.close()
    await mtlsAgents.close()
    await runtime.dispatcher.close()
  }
  return { runtime, identities, tokens, mtlsAgents, close }
}

/** The upstream clients identities share, with what ends them (after the identities closed). */
interface UpstreamClients {
  sources: IdentitySources
  close(): Promise<void>
}

/**
 * The IMDS v1/v2 and Entra clients, the key provider, and the IMDS v2 binding credential of each
 * managed identity, built once and shared by every identity: a bound managed identity and an app's
 * bound FIC leg 1 on the same VM identity hold one certificate, not two.
 */
function buildIdentitySources(
  config: SidecarConfig,
  runtime: Runtime,
  mtlsAgents: MtlsAgents,
): UpstreamClients {
  const imdsEndpoint = config.upstream.imdsEndpoint
  const imdsV2 = new ImdsV2Client({ runtime, imdsEndpoint })
  const keyProvider = new SoftwareKeyProvider()
  const bindingStores = bindingStoresBySelector(config)
  const bindingCredentials = new Map<string, ImdsV2BindingCredential>()
  const entra = new EntraTokenClient({ runtime, agents: mtlsAgents })
  const sources: IdentitySources = {
    runtime,
    imdsV1: new ImdsV1Client({ runtime, imdsEndpoint }),
    entra,
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
  return {
    sources,
    close: async () => {
      // Idempotent: identities that use a shared credential have closed it already.
      await Promise.all([...bindingCredentials.values()].map((credential) => credential.close()))
      await entra.close()
    },
  }
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

function createRuntime(options: CoreOptions): Runtime {
  const { config } = options
  const extraCaPem = config.upstream.caFile ? [readCaFile(config.upstream.caFile)] : []
  return {
    clock: options.clock ?? new SystemClock(),
    random: options.random ?? Math.random,
    logger: options.logger ?? createLogger({ level: config.log.level }),
    metrics: new Metrics({ identities: config.identities.keys() }),
    dispatcher: options.dispatcher
      ? readyDispatcher(options.dispatcher)
      : new LazyAgent((undici) => {
          const connect = trustingConnector(undici, extraCaPem)
          return connect ? { connect } : {}
        }),
    extraCaPem,
    timeoutMs: config.upstream.timeoutMs,
    retryAfterHints: new RetryAfterHints(),
  }
}

/**
 * `upstream.caFile` decides whom the daemon trusts with its credentials, so it is checked like every
 * file the daemon reads (contract §2): a regular file owned by the daemon's uid or root, not
 * writable by group or others, opened without blocking; otherwise the daemon does not start.
 */
function readCaFile(path: string): string {
  try {
    return readCheckedFileSync(path, trustedFile).bytes.toString('utf8')
  } catch (error) {
    throw new Error(`upstream.caFile: ${describeFileProblem(path, error)}`)
  }
}

/** What the HTTP surface is built from, over a core. */
export interface Surface {
  readiness: Readiness
  /** `callers.allow`: connection owners, read once per connection by the TCP listener. */
  peers: PeerUids | undefined
  /** The app's dependencies (main surface); the ops app takes the same with `surface: 'ops'`. */
  app: AppDeps
  /** Ends what the surface runs besides the listeners: the `callers.allow` socket-table worker. */
  close(): Promise<void>
}

const ownUid = process.getuid?.()

/** Readiness, the proxy and the caller policy (`callers`), wired to a core. */
export function buildSurface(config: SidecarConfig, core: Core, socketTable?: SocketTable): Surface {
  const { runtime, tokens } = core
  const secretFile = config.callers.secretFile
    ? new SecretFile({ path: config.callers.secretFile, clock: runtime.clock, logger: runtime.logger })
    : undefined
  const readiness = new Readiness()
  const downstream = new DownstreamProxy({
    runtime,
    tokens,
    apis: config.downstreamApis,
    mtlsAgents: core.mtlsAgents,
  })
  const table = config.callers.allow
    ? (socketTable ??
      new SocketTable({
        ...(ownUid === undefined ? {} : { ownUid }),
        onBackendChosen: (lookup, problem) => logCallerLookup(runtime.logger, lookup, problem),
      }))
    : undefined
  const peers = table ? new PeerUids(table, runtime.metrics) : undefined
  const callers: CallerChecks = {
    requireMetadataHeader: config.callers.requireMetadataHeader,
    exposePrivateKey: config.callers.exposePrivateKey,
    secret: () => secretFile?.current(),
    hostAllowed: localHostPolicy(config.listen.host),
    ...(peers && config.callers.allow
      ? {
          access: new AllowListAccess({
            entries: config.callers.allow,
            peers,
            logger: runtime.logger,
            metrics: runtime.metrics,
            clock: runtime.clock,
          }),
        }
      : {}),
  }
  return {
    readiness,
    peers,
    app: {
      runtime,
      tokens,
      readiness,
      downstream,
      agentIdSidecar: config.compat.agentIdSidecar,
      callers,
    },
    close: async () => {
      await table?.close()
    },
  }
}

/** Once, at the first caller lookup: which lookup serves `callers.allow`, and why not the fast one. */
function logCallerLookup(logger: Logger, lookup: 'proc' | 'sock-diag', problem: string | undefined): void {
  if (problem === undefined) {
    logger.info(
      { event: 'caller_lookup', lookup },
      'callers.allow: caller uids read with the kernel socket diagnostics',
    )
    return
  }
  logger.warn(
    { event: 'caller_lookup', lookup, reason: problem },
    lookup === 'proc'
      ? 'callers.allow: socket diagnostics unavailable; caller uids read from /proc/net/tcp (milliseconds per new connection)'
      : 'callers.allow: socket diagnostics unavailable; callers cannot be identified and are refused',
  )
}
