import type { RsaKeyPair } from '../../sidecar/src/pki/keys.ts'
import { generateRsaKeyPair } from '../../sidecar/src/pki/keys.ts'
import {
  startEmulator as startProductEmulator,
  type Emulator,
  type EmulatorOptions,
} from '../../sidecar/src/emulator/emulator.ts'
import type { EmulatorKeyRole, EmulatorKeySource } from '../../sidecar/src/emulator/key-source.ts'
import {
  createEmulatorState as createProductState,
  type EmulatorSettings,
  type EmulatorState,
} from '../../sidecar/src/emulator/state.ts'
import type { Clock } from '../../sidecar/src/core/clock.ts'

const pool = new Map<EmulatorKeyRole, Promise<RsaKeyPair>>()

/**
 * The emulator keys of this test process: one RSA-2048 key per role, generated on first use and
 * handed to every emulator the process starts. Emulators in one process then share their CA key,
 * TLS keys and token signing key (each still has its own CA certificate, tenant, signing `kid` and
 * app registrations). The daemon's own keys (binding keys) never come from here, and a test that
 * needs a CA other than the emulator's creates one with `CertificateAuthority.create()`, which
 * generates a fresh key.
 */
export const testEmulatorKeys: EmulatorKeySource = {
  rsaKeyPair(role) {
    let keys = pool.get(role)
    if (!keys) {
      keys = generateRsaKeyPair(2048)
      pool.set(role, keys)
    }
    return keys
  },
}

/** `startEmulator` with this process's shared emulator keys (unless `options.keys` says otherwise). */
export function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  return startProductEmulator({ keys: testEmulatorKeys, ...options })
}

/** `createEmulatorState` with this process's shared emulator keys. */
export function createEmulatorState(
  clock: Clock,
  settings: Partial<EmulatorSettings> = {},
): Promise<EmulatorState> {
  return createProductState(clock, settings, testEmulatorKeys)
}

export type { Emulator, EmulatorOptions }
