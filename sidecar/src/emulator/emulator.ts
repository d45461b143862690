import { SystemClock, type Clock } from '../core/clock.ts'
import { demoResourceAudience, startDemoResource } from './demo-resource.ts'
import { startEmulatedEntra, type EmulatedEntraOptions } from './entra.ts'
import { startEmulatedImds } from './imds.ts'
import { imdsV2Routes } from './imds-v2.ts'
import type { EmulatorKeySource } from './key-source.ts'
import { createEmulatorState, type EmulatorSettings, type EmulatorState } from './state.ts'

/** A running emulator: IMDS v1/v2, Entra (regular + mTLS) and a demo mTLS resource on loopback. */
export interface Emulator {
  state: EmulatorState
  /** http://127.0.0.1:PORT — point `upstream.imdsEndpoint` here. */
  imdsUrl: string
  /** https, no client certificate: the authority host for confidential clients. */
  entraUrl: string
  /** https, TLS 1.2, client certificate required: what IMDS v2 names as mtls_authentication_endpoint. */
  entraMtlsUrl: string
  /** https resource that accepts Bearer and mtls_pop tokens (audience `demoResourceAudience`). */
  resourceUrl: string
  resourceAudience: string
  /** PEM of the CA that issued every emulator server and client certificate: `upstream.caFile`. */
  caPem: string
  close(): Promise<void>
}

export interface EmulatorOptions {
  clock?: Clock
  settings?: Partial<EmulatorSettings>
  entra?: EmulatedEntraOptions
  /** Where the emulator's own keys come from; default a fresh key for every use (see `EmulatorKeySource`). */
  keys?: EmulatorKeySource
}

/**
 * Starts the emulator: real HTTP/HTTPS servers on 127.0.0.1 with ephemeral ports, doing real
 * crypto (CSR checks, a CA, TLS client-certificate checks, JWTs with `cnf`). Used by
 * `credential-sidecar demo` and by the tests.
 */
export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const state = await createEmulatorState(options.clock ?? new SystemClock(), options.settings, options.keys)
  const [entra, resource] = await Promise.all([
    startEmulatedEntra(state, options.entra),
    startDemoResource(state),
  ])
  const imds = await startEmulatedImds(state, { extraRoutes: [imdsV2Routes(state)] })
  return {
    state,
    imdsUrl: imds.url,
    entraUrl: entra.url,
    entraMtlsUrl: entra.mtlsUrl,
    resourceUrl: resource.url,
    resourceAudience: demoResourceAudience,
    caPem: state.ca.certificatePem,
    close: async () => {
      await Promise.all([imds.close(), entra.close(), resource.close()])
    },
  }
}
