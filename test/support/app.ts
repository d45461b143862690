import type { TestContext } from 'node:test'
import type { Hono } from 'hono'
import { parseConfig } from '../../sidecar/src/config/load.ts'
import { buildCore, buildSurface, type Surface } from '../../sidecar/src/daemon/compose.ts'
import { startEmulator, type Emulator } from './emulator.ts'
import { createApp } from '../../sidecar/src/http/app.ts'
import { capturingLogger, type LogCapture } from './runtime.ts'

export interface InProcessApp {
  /** The daemon's hono app: `app.request(path, init)` answers in process, no socket. */
  app: Hono<any>
  /** Readiness, the proxy and the caller policy the app was built with. */
  surface: Surface
  emulator: Emulator
  logs: LogCapture
  /** `app.request` with `Host: 127.0.0.1` and `Metadata: true` unless overridden (`null` leaves one out). */
  request(path: string, headers?: Record<string, string | null>): Promise<Response>
}

/**
 * The app a daemon would serve, built by the daemon's own composition (`buildCore`, `buildSurface`)
 * from a config whose IMDS is the emulator's, without listening. `configYaml` is everything but
 * `listen` and `upstream` (default: one system-assigned managed identity `mi`).
 */
export async function startInProcessApp(
  t: TestContext,
  options: { configYaml?: string } = {},
): Promise<InProcessApp> {
  const emulator = await startEmulator()
  t.after(() => emulator.close())
  const body = options.configYaml ?? 'identities:\n  mi:\n    managedIdentity: {}\n'
  const config = parseConfig(
    `listen:\n  host: 127.0.0.1\n  port: 0\nupstream:\n  imdsEndpoint: ${emulator.imdsUrl}\n${body}`,
    { source: 'test.yaml', env: {} },
  )
  const { logger, logs } = capturingLogger()
  const core = await buildCore({ config, logger })
  const surface = buildSurface(config, core)
  t.after(async () => {
    await surface.close()
    await core.close()
  })
  const app = createApp(surface.app)
  const request = async (path: string, headers: Record<string, string | null> = {}) => {
    const merged: Record<string, string | null> = { Host: '127.0.0.1', Metadata: 'true', ...headers }
    const sent = Object.entries(merged).filter((entry): entry is [string, string] => entry[1] !== null)
    return app.request(path, { headers: sent })
  }
  return { app, surface, emulator, logs, request }
}
