import { getCACertificates } from 'node:tls'
import { Agent } from 'undici'
import { SidecarClientError } from './errors.ts'
import type { SidecarBindingCertificate } from './token.ts'

/** PEM of a CA (or several) to trust in addition to Node's roots and `NODE_EXTRA_CA_CERTS`. */
export type CaOption = string | readonly string[]

interface Slot {
  x5tS256: string
  agent: Agent
}

/**
 * One undici Agent per binding certificate, presenting it in every TLS handshake. A slot is an
 * (identity, extra CA) pair: when the identity's certificate rotates (its x5t#S256 changes) the
 * slot gets a new Agent and the old one is closed gracefully — `close()` lets requests already
 * sent on it finish, and nobody waits for it.
 */
export class MtlsAgents {
  readonly #slots = new Map<string, Slot>()
  readonly #trustAgents = new Map<string, Agent>()

  /** The Agent presenting `binding`; built on first use and after each rotation. */
  forBinding(identity: string, binding: SidecarBindingCertificate, ca: CaOption | undefined): Agent {
    if (binding.privateKey === undefined) {
      throw new SidecarClientError(
        'private_key_not_exposed',
        `The sidecar did not return the private key of identity "${identity}"'s binding certificate ` +
          '(callers.exposePrivateKey: false), so the SDK cannot present it; call the resource ' +
          "through the sidecar's /downstream proxy instead",
      )
    }
    const key = slotKey(identity, ca)
    const slot = this.#slots.get(key)
    if (slot?.x5tS256 === binding.x5tS256) return slot.agent
    const agent = new Agent({
      connect: {
        cert: binding.certificate,
        key: binding.privateKey,
        ...(ca === undefined ? {} : { ca: caList(ca) }),
      },
    })
    this.#slots.set(key, { x5tS256: binding.x5tS256, agent })
    if (slot) closeQuietly(slot.agent)
    return agent
  }

  /** A plain Agent trusting `ca`, for Bearer calls to a resource behind a private CA. */
  trusting(ca: CaOption): Agent {
    const key = caKey(ca)
    let agent = this.#trustAgents.get(key)
    if (agent === undefined) {
      agent = new Agent({ connect: { ca: caList(ca) } })
      this.#trustAgents.set(key, agent)
    }
    return agent
  }

  /** Closes every Agent, letting requests under way finish. */
  async close(): Promise<void> {
    const agents = [...[...this.#slots.values()].map((s) => s.agent), ...this.#trustAgents.values()]
    this.#slots.clear()
    this.#trustAgents.clear()
    await Promise.all(agents.map((agent) => agent.close()))
  }
}

/**
 * Node's `ca` option replaces the default trust store, so a private CA is added to it (bundled
 * roots plus `NODE_EXTRA_CA_CERTS`) rather than given alone: a caller that trusts its own CA must
 * still reach public resources.
 */
function caList(ca: CaOption): string[] {
  return [...getCACertificates('default'), ...(typeof ca === 'string' ? [ca] : ca)]
}

function caKey(ca: CaOption | undefined): string {
  return ca === undefined ? '' : typeof ca === 'string' ? ca : ca.join('\n')
}

function slotKey(identity: string, ca: CaOption | undefined): string {
  return `${identity}\0${caKey(ca)}`
}

function closeQuietly(agent: Agent): void {
  agent.close().catch(() => {})
}
