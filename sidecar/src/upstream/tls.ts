import { createSecureContext, getCACertificates, type SecureContextOptions } from 'node:tls'
import { LRUCache } from 'lru-cache'
import type { Agent, buildConnector, Dispatcher } from 'undici'
import type { BindingCertificate } from '../model/binding.ts'
import { loadUndici, type Undici } from './undici.ts'

/**
 * The CA list for upstream TLS: Node's default trust (its roots plus `NODE_EXTRA_CA_CERTS`) plus
 * `upstream.caFile`. Node's `ca` option replaces the default trust, so with extra CAs the default
 * list must be added back or public endpoints stop verifying; `tls.rootCertificates` alone would
 * silently drop `NODE_EXTRA_CA_CERTS`. Undefined means "Node's defaults".
 */
export function trustedCas(extraCaPem: readonly string[]): string[] | undefined {
  return extraCaPem.length === 0 ? undefined : [...getCACertificates('default'), ...extraCaPem]
}

/**
 * undici `connect` options for `tls` (client certificate, versions) trusting `ca` (undefined: Node's
 * defaults), with the secure context built once, here. Given as plain options, Node builds a new
 * context for every TLS connection, parsing each of the ~140 root certificates again: tens of ms of
 * CPU on the cold path. An option Node refuses is left for the connection to report, as before.
 */
export function tlsConnectOptions(
  ca: readonly string[] | undefined,
  tls: SecureContextOptions = {},
): SecureContextOptions | { secureContext: ReturnType<typeof createSecureContext> } {
  const options: SecureContextOptions = ca ? { ...tls, ca: [...ca] } : tls
  if (Object.keys(options).length === 0) return {}
  try {
    return { secureContext: createSecureContext(options) }
  } catch {
    return options
  }
}

/**
 * The plain dispatcher's `connect` option when `upstream.caFile` is set: an undici connector whose
 * TLS side trusts `extraCaPem` besides Node's defaults, its secure context built (`tlsConnectOptions`)
 * by the first HTTPS connection. Parsing Node's ~140 roots into it costs ~50 ms of CPU, which a daemon
 * that only calls IMDS over plain HTTP then never pays. Undefined without extra CAs: undici's default
 * connector.
 */
export function trustingConnector(
  undici: Pick<Undici, 'buildConnector'>,
  extraCaPem: readonly string[],
): buildConnector.connector | undefined {
  if (extraCaPem.length === 0) return undefined
  let plain: buildConnector.connector | undefined
  let tls: buildConnector.connector | undefined
  return (options, callback) => {
    if (options.protocol !== 'https:') {
      plain ??= undici.buildConnector({})
      return plain(options, callback)
    }
    tls ??= undici.buildConnector(tlsConnectOptions(trustedCas(extraCaPem)))
    return tls(options, callback)
  }
}

export interface MtlsAgentsOptions {
  /** `upstream.caFile`: trusted besides Node's defaults, by every agent of the cache. */
  extraCaPem: readonly string[]
  /** Most agents kept; the least recently used one is closed past this. Default 32. */
  max?: number
}

/**
 * The daemon's one cache of client-certificate (mTLS) agents, shared by the Entra token client and
 * the downstream proxy: one undici Agent per certificate (keyed by `x5t#S256`), so connections and
 * TLS sessions are reused per certificate and never across certificates. `tls12` agents are pinned
 * to TLS 1.2: Entra only asks for the client certificate under TLS 1.2 (upstream-protocol.md §3);
 * a downstream resource gets whatever TLS it speaks. undici is loaded, and the CA list built, by the
 * first agent.
 */
export class MtlsAgents {
  readonly #extraCaPem: readonly string[]
  #ca: { list: string[] | undefined } | undefined
  readonly #agents: LRUCache<string, Agent>
  #closing = false

  constructor(options: MtlsAgentsOptions) {
    this.#extraCaPem = options.extraCaPem
    this.#agents = new LRUCache<string, Agent>({
      max: options.max ?? 32,
      // close() lets in-flight requests finish; a failure to close is of no interest here.
      dispose: (agent) => {
        if (!this.#closing) void agent.close().catch(() => {})
      },
    })
  }

  /** The agent that presents `binding` as its TLS client certificate. */
  async get(binding: BindingCertificate, options: { tls12?: boolean } = {}): Promise<Dispatcher> {
    const key = agentKey(binding.x5tS256, options.tls12 ?? false)
    const cached = this.#agents.get(key)
    if (cached) return cached
    const { Agent } = await loadUndici()
    // Another request for the same certificate may have made it while undici loaded.
    let agent = this.#agents.get(key)
    if (!agent) {
      const pin = options.tls12 ? ({ minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' } as const) : {}
      this.#ca ??= { list: trustedCas(this.#extraCaPem) }
      agent = new Agent({
        connect: tlsConnectOptions(this.#ca.list, {
          cert: binding.certificatePem,
          key: binding.privateKeyPem,
          ...pin,
        }),
      })
      this.#agents.set(key, agent)
    }
    return agent
  }

  /** Drops (and closes) the agents for a certificate that was rejected or replaced. */
  evict(x5tS256: string): void {
    this.#agents.delete(agentKey(x5tS256, true))
    this.#agents.delete(agentKey(x5tS256, false))
  }

  /** Closes every agent, letting requests under way finish. Once, at shutdown. */
  async close(): Promise<void> {
    const agents = [...this.#agents.values()]
    this.#closing = true
    this.#agents.clear()
    this.#closing = false
    await Promise.allSettled(agents.map((agent) => agent.close()))
  }
}

function agentKey(x5tS256: string, tls12: boolean): string {
  return tls12 ? `${x5tS256} tls1.2` : x5tS256
}
