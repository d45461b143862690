import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import type { TestContext } from 'node:test'
import { SystemClock, type Clock } from '../../sidecar/src/core/clock.ts'
import { imdsV2Routes } from '../../sidecar/src/emulator/imds-v2.ts'
import type { EmulatorSettings, EmulatorState } from '../../sidecar/src/emulator/state.ts'
import { createEmulatorState } from '../support/emulator.ts'
import type { Logger } from '../../sidecar/src/core/log.ts'
import type { Runtime } from '../../sidecar/src/core/runtime.ts'
import { testRuntime } from '../support/runtime.ts'

export const IMDS_SERVER_HEADER = 'IMDS/150.870.65.1854'

export interface SeenRequest {
  method: string
  url: URL
  headers: Headers
  body: string
}

export interface EmulatedImds {
  state: EmulatorState
  url: string
  /** Every request as it arrived on the wire. */
  requests: SeenRequest[]
  close(): Promise<void>
}

/**
 * The IMDS v2 routes on a real loopback port, behind a tiny app that stamps the `Server` header
 * the way the real IMDS (and the emulator's IMDS server) does. `serverHeader: null` leaves it off.
 */
export async function startImdsV2(
  options: { clock?: Clock; settings?: Partial<EmulatorSettings>; serverHeader?: string | null } = {},
): Promise<EmulatedImds> {
  const clock = options.clock ?? new SystemClock()
  const state = await createEmulatorState(clock, {
    entraMtlsBaseUrl: 'https://127.0.0.1:4443/',
    ...options.settings,
  })
  const header = options.serverHeader === undefined ? IMDS_SERVER_HEADER : options.serverHeader
  const requests: SeenRequest[] = []
  const app = new Hono()
  app.use(async (c, next) => {
    const body = c.req.method === 'POST' ? await c.req.raw.clone().text() : ''
    requests.push({
      method: c.req.method,
      url: new URL(c.req.url),
      headers: new Headers(c.req.raw.headers),
      body,
    })
    await next()
    if (header !== null) c.res.headers.set('Server', header)
  })
  app.route('/', imdsV2Routes(state))
  const { server, port } = await new Promise<{ server: ReturnType<typeof serve>; port: number }>(
    (resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) =>
        resolve({ server: s, port: info.port }),
      )
    },
  )
  return {
    state,
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        ;(server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.()
      }),
  }
}

/** Starts an emulated IMDS v2 and a runtime, both torn down after the test. */
export async function setup(
  t: TestContext,
  options: {
    clock?: Clock
    settings?: Partial<EmulatorSettings>
    serverHeader?: string | null
    logger?: Logger
  } = {},
): Promise<{ imds: EmulatedImds; runtime: Runtime }> {
  const imds = await startImdsV2(options)
  const runtime = testRuntime({
    clock: options.clock ?? imds.state.clock,
    ...(options.logger ? { logger: options.logger } : {}),
  })
  t.after(async () => {
    await runtime.dispose()
    await imds.close()
  })
  return { imds, runtime }
}

/** Drives a fake clock until `promise` settles (real I/O happens between steps). */
export async function driveUntilSettled<T>(
  clock: { advance(ms: number): Promise<void> },
  promise: Promise<T>,
  stepMs = 250,
  maxSteps = 400,
): Promise<T> {
  let settled = false
  const tracked = promise.finally(() => {
    settled = true
  })
  tracked.catch(() => undefined)
  for (let i = 0; i < maxSteps && !settled; i++) {
    await clock.advance(stepMs)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  return tracked
}
