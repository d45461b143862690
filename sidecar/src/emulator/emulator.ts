import { SystemClock, type Clock } from '../clock.ts'
import { startEmulatedImds } from './imds.ts'
import { createEmulatorState, type EmulatorSettings, type EmulatorState } from './state.ts'

/** A running emulator: IMDS v1/v2, Entra (regular + mTLS) and a demo mTLS resource on loopback. */
export interface Emulator {
  state: EmulatorState
  imdsUrl: string
  /** PEM of the CA that issued every emulator server and client certificate. */
  caPem: string
  close(): Promise<void>
}

export interface EmulatorOptions {
  clock?: Clock
  settings?: Partial<EmulatorSettings>
}

/**
 * Starts the emulator: real HTTP/HTTPS servers on 127.0.0.1 with ephemeral ports, doing real
 * crypto. Used by `credential-sidecar demo` and by the tests.
 */
export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const state = await createEmulatorState(options.clock ?? new SystemClock(), options.settings)
  const imds = await startEmulatedImds(state)
  return {
    state,
    imdsUrl: imds.url,
    caPem: state.ca.certificatePem,
    close: async () => {
      await imds.close()
    },
  }
}
