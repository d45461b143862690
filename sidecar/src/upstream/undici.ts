import type { Agent, Dispatcher } from 'undici'
import type { DeferredDispatcher } from '../core/runtime.ts'

export type Undici = typeof import('undici')

/**
 * undici, loaded on first use rather than at start (issue 21): evaluating it costs ~10 ms of CPU
 * and several MB, and its fetch code reads `globalThis.Headers`, which makes Node load its own
 * built-in copy of undici too; a daemon that serves cached tokens or waits for its first caller
 * needs neither until it calls IMDS or Entra. The module system keeps the one instance.
 */
export async function loadUndici(): Promise<Undici> {
  const module = (await import('undici')) as Undici & { default?: Undici }
  // Node hands a CommonJS module's exports as `default` (the named exports are a lexer's guess).
  return module.default ?? module
}

/**
 * An undici Agent made (and undici loaded) by the first request that asks for it, with the options
 * `options` builds from the loaded module then.
 */
export class LazyAgent implements DeferredDispatcher {
  readonly #options: (undici: Undici) => Agent.Options
  #agent: Promise<Agent> | undefined

  constructor(options: (undici: Undici) => Agent.Options = () => ({})) {
    this.#options = options
  }

  get(): Promise<Dispatcher> {
    this.#agent ??= loadUndici().then((undici) => new undici.Agent(this.#options(undici)))
    return this.#agent
  }

  /** Closes the agent if one was made, letting requests under way finish. */
  async close(): Promise<void> {
    if (this.#agent) await (await this.#agent).close()
  }
}

/** A dispatcher that exists already (a test's Agent), as a `DeferredDispatcher`; closing it is its owner's job. */
export function readyDispatcher(dispatcher: Dispatcher): DeferredDispatcher {
  const ready = Promise.resolve(dispatcher)
  return { get: () => ready, close: async () => {} }
}
