import { LRUCache } from 'lru-cache'
import { Agent, type Dispatcher } from 'undici'
import { tlsConnectOptions, trustedCas } from '../trusted-cas.ts'
import type { BindingCertificate } from '../../model/binding.ts'

export interface MtlsDispatchersOptions {
  extraCaPem: readonly string[]
  /** Most agents kept; the least recently used one is closed past this. Default 32. */
  max?: number
}

/**
 * One undici Agent per client certificate (keyed by `x5t#S256`), so connections and TLS sessions
 * are reused per certificate and never across certificates. TLS is pinned to 1.2: Entra only asks
 * for the client certificate under TLS 1.2 (upstream-protocol.md §3).
 */
export class MtlsDispatchers {
  readonly #ca: string[] | undefined
  readonly #agents: LRUCache<string, Agent>
  #closing = false

  constructor(options: MtlsDispatchersOptions) {
    this.#ca = trustedCas(options.extraCaPem)
    this.#agents = new LRUCache<string, Agent>({
      max: options.max ?? 32,
      // close() lets in-flight requests finish; a failure to close is of no interest here.
      dispose: (agent) => {
        if (!this.#closing) void agent.close().catch(() => {})
      },
    })
  }

  /** The agent that presents `binding` as its TLS client certificate. */
  get(binding: BindingCertificate): Dispatcher {
    let agent = this.#agents.get(binding.x5tS256)
    if (!agent) {
      agent = new Agent({
        connect: tlsConnectOptions(this.#ca, {
          cert: binding.certificatePem,
          key: binding.privateKeyPem,
          minVersion: 'TLSv1.2',
          maxVersion: 'TLSv1.2',
        }),
      })
      this.#agents.set(binding.x5tS256, agent)
    }
    return agent
  }

  /** Drops (and closes) the agent for a certificate that was rejected or replaced. */
  evict(x5tS256: string): void {
    this.#agents.delete(x5tS256)
  }

  get size(): number {
    return this.#agents.size
  }

  async close(): Promise<void> {
    const agents = [...this.#agents.values()]
    this.#closing = true
    this.#agents.clear()
    this.#closing = false
    await Promise.allSettled(agents.map((agent) => agent.close()))
  }
}
