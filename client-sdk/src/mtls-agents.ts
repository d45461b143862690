// A namespace import: a named import of getCACertificates fails to link on Node.js < 22.15, before
// node-version.ts can say so.
import * as tls from 'node:tls'
import { Agent } from 'undici'
import { SidecarClientError } from './errors.ts'
import type { SidecarBindingCertificate } from './token.ts'

/**
 * PEM of a CA (or several) to trust in addition to Node's roots and `NODE_EXTRA_CA_CERTS`.
 *
 * @example
 * ```ts
 * const ca: CaOption = readFileSync('/etc/ssl/private-ca.pem', 'utf8')
 * await sidecar.fetch(url, { scope, ca })
 * ```
 */
export type CaOption = string | readonly string[]

interface Held {
  agent: Agent
  /** Slots (identity + scope + CA) whose current token is bound to this certificate. */
  users: Set<string>
}

/**
 * One undici Agent per binding certificate (x5t#S256) and extra CA, presenting the certificate in
 * every TLS handshake. Each (identity, scope, CA) slot uses the Agent of its current token; when a
 * slot's token comes bound to another certificate (rotation), the slot moves to a new Agent and an
 * Agent no slot uses any more is closed gracefully — `close()` lets requests already sent on it
 * finish, and nobody waits for it. Counting users rather than closing on the first change matters
 * because after a rotation the sidecar still serves older tokens, bound to the old certificate,
 * for other scopes until they refresh.
 */
export class MtlsAgents {
  readonly #agents = new Map<string, Held>()
  readonly #slots = new Map<string, string>()
  readonly #trustAgents = new Map<string, Agent>()

  /** The Agent presenting `binding` for `slot` (identity + scope); built on first use and after each rotation. */
  forBinding(
    slot: string,
    identity: string,
    binding: SidecarBindingCertificate,
    ca: CaOption | undefined,
  ): Agent {
    if (binding.privateKey === undefined) {
      throw new SidecarClientError(
        'private_key_not_exposed',
        `The sidecar did not return the private key of identity "${identity}"'s binding certificate ` +
          '(callers.exposePrivateKey: false), so the SDK cannot present it; call the resource ' +
          "through the sidecar's /downstream proxy instead",
      )
    }
    const slotKey = `${slot}\0${caKey(ca)}`
    const agentKey = `${binding.x5tS256}\0${caKey(ca)}`
    let held = this.#agents.get(agentKey)
    if (held === undefined) {
      const agent = new Agent({
        connect: {
          cert: binding.certificate,
          key: binding.privateKey,
          ...(ca === undefined ? {} : { ca: caList(ca) }),
        },
      })
      held = { agent, users: new Set() }
      this.#agents.set(agentKey, held)
    }
    const previous = this.#slots.get(slotKey)
    if (previous !== agentKey) {
      this.#slots.set(slotKey, agentKey)
      held.users.add(slotKey)
      if (previous !== undefined) this.#release(previous, slotKey)
    }
    return held.agent
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
    const agents = [...[...this.#agents.values()].map((held) => held.agent), ...this.#trustAgents.values()]
    this.#agents.clear()
    this.#slots.clear()
    this.#trustAgents.clear()
    await Promise.all(agents.map((agent) => agent.close()))
  }

  #release(agentKey: string, slotKey: string): void {
    const held = this.#agents.get(agentKey)
    if (held === undefined) return
    held.users.delete(slotKey)
    if (held.users.size > 0) return
    this.#agents.delete(agentKey)
    held.agent.close().catch(() => {})
  }
}

/**
 * Node's `ca` option replaces the default trust store, so a private CA is added to it (bundled
 * roots plus `NODE_EXTRA_CA_CERTS`) rather than given alone: a caller that trusts its own CA must
 * still reach public resources.
 */
function caList(ca: CaOption): string[] {
  return [...tls.getCACertificates('default'), ...(typeof ca === 'string' ? [ca] : ca)]
}

function caKey(ca: CaOption | undefined): string {
  return ca === undefined ? '' : typeof ca === 'string' ? ca : ca.join('\n')
}
