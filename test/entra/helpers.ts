import type { TestContext } from 'node:test'
import { SystemClock, type Clock } from '../../sidecar/src/core/clock.ts'
import { startEmulatedEntra, type EmulatedEntra } from '../../sidecar/src/emulator/entra.ts'
import type { EmulatorSettings, EmulatorState } from '../../sidecar/src/emulator/state.ts'
import { createEmulatorState } from '../support/emulator.ts'
import type { Metrics } from '../../sidecar/src/core/metrics.ts'
import { certificateInfo } from '../../sidecar/src/pki/x509.ts'
import type { Runtime } from '../../sidecar/src/core/runtime.ts'
import { EntraTokenClient } from '../../sidecar/src/upstream/entra/token-client.ts'
import type { BindingCertificate } from '../../sidecar/src/model/binding.ts'
import { testRuntime } from '../support/runtime.ts'

/** Real time, but retry back-off sleeps return at once (and are recorded) so tests stay fast. */
export class InstantSleepClock implements Clock {
  readonly #system = new SystemClock()
  readonly sleeps: number[] = []

  now(): number {
    return this.#system.now()
  }

  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw signal.reason
    this.sleeps.push(ms)
  }

  setTimer(ms: number, fn: () => void) {
    return this.#system.setTimer(ms, fn)
  }
}

export interface EntraFixture {
  state: EmulatorState
  entra: EmulatedEntra
  clock: InstantSleepClock
  runtime: Runtime
  client: EntraTokenClient
  metrics: Metrics
  tokenUrl: string
  mtlsTokenUrl: string
}

export async function startEntraFixture(
  t: TestContext,
  settings: Partial<EmulatorSettings> = {},
): Promise<EntraFixture> {
  const clock = new InstantSleepClock()
  const state = await createEmulatorState(clock, settings)
  const entra = await startEmulatedEntra(state)
  const runtime = testRuntime({ clock, trust: [state.ca.certificatePem] })
  const { metrics } = runtime
  const client = new EntraTokenClient({ runtime })
  t.after(async () => {
    await client.close()
    await runtime.dispose()
    await entra.close()
  })
  return {
    state,
    entra,
    clock,
    runtime,
    client,
    metrics,
    tokenUrl: `${entra.url}/${state.tenantId}/oauth2/v2.0/token`,
    mtlsTokenUrl: `${entra.mtlsUrl}/${state.tenantId}/oauth2/v2.0/token`,
  }
}

/** Issues a client certificate from the emulator's CA with CN = `commonName`, as a BindingCertificate. */
export async function issueClientCertificate(
  state: EmulatorState,
  commonName: string,
): Promise<BindingCertificate> {
  const issued = await state.ca.issueWithNewKey({
    subject: [{ shortName: 'CN', value: commonName }],
    usage: 'client',
    validityMs: 24 * 3600_000,
  })
  return toBinding(issued)
}

export function toBinding(issued: { certificatePem: string; privateKeyPem: string }): BindingCertificate {
  const info = certificateInfo(issued.certificatePem)
  return {
    x5tS256: info.x5tS256,
    certificatePem: issued.certificatePem,
    privateKeyPem: issued.privateKeyPem,
    notAfter: info.notAfter,
    keyProtection: 'software',
  }
}

/** Sum of a prom-client counter's values. */
export async function counterTotal(metrics: Metrics, name: string): Promise<number> {
  const metric = metrics.registry.getSingleMetric(name)
  if (!metric) return 0
  const { values } = await metric.get()
  return values.reduce((sum, v) => sum + v.value, 0)
}

export async function rejectsWith<T>(promise: Promise<T>): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error('expected a rejection')
}
