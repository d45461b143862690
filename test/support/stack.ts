import { randomUUID } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { parseConfig } from '../../sidecar/src/config/load.ts'
import type { Clock } from '../../sidecar/src/core/clock.ts'
import { Daemon } from '../../sidecar/src/daemon/daemon.ts'
import type { SocketTable } from '../../sidecar/src/http/callers/socket-table.ts'
import { startEmulator, type Emulator, type EmulatorOptions } from './emulator.ts'
import { registerApp, type AppRegistration } from '../../sidecar/src/emulator/entra.ts'
import { capturingLogger, type LogCapture } from './runtime.ts'

export interface Stack {
  emulator: Emulator
  daemon: Daemon
  url: string
  logs: LogCapture
  /** A temp directory (holding the emulator's CA file) for certificate and token files, removed after the test. */
  dir: string
  /** The emulated tenant. */
  tenantId: string
  /** GET a daemon route with `Metadata: true` (unless overridden). */
  get(path: string, headers?: Record<string, string>): Promise<Response>
  /** GET /token?resource=…&identity=… (default identity: `app` in an app stack, else none) and the parsed body. */
  token(resource: string, identity?: string): Promise<{ status: number; body: Record<string, any> }>
  /** GET /credential?identity=… (same default identity). */
  credential(identity?: string): Promise<{ status: number; body: Record<string, any> }>
}

/** A stack whose default identity is the confidential-client app `app` registered in the emulated tenant. */
export interface AppStack extends Stack {
  /** The app registered in the emulated tenant. */
  clientId: string
}

/** What an app stack's callbacks see: they may write files into `dir` and register certificates. */
export interface AppContext {
  emulator: Emulator
  dir: string
  clientId: string
}

export interface StackOptions {
  /**
   * YAML for everything but `listen` and `upstream` (imdsEndpoint, authorityHost = the emulated
   * Entra, caFile = the emulator's CA); `${NAME}` values come from `env`. In an app stack, top-level
   * YAML put before the `app` identity (no `identities:` of its own).
   */
  configYaml?: (emulator: Emulator) => string
  /** Extra lines under `listen:` and `upstream:`, indented by two spaces, e.g. `  requestDeadlineMs: 800\n`. */
  listenYaml?: string
  upstreamYaml?: string
  emulator?: EmulatorOptions
  clock?: Clock
  random?: () => number
  env?: Record<string, string>
  /** `listen.host` (default 127.0.0.1), e.g. `"::1"`. */
  listenHost?: string
  /** callers.allow: where connection owners are read from (default the real /proc). */
  socketTable?: SocketTable
  /** callers.allow: the passwd file `user:` entries resolve through (default /etc/passwd). */
  passwdFile?: string
  /**
   * Makes an app stack: a confidential-client app is registered in the emulated tenant and served
   * as identity `app` (the default). Returns the `app` identity's keys besides tenantId and clientId
   * (YAML, indented 4 spaces) and any further identities (indented 2). The emulated Entra serves its
   * mTLS endpoint on the regular host too (`mtlsOnRegularHost`): an authority host that does not
   * start with `login.` is used as-is for mTLS (contract §2), so the daemon reaches both through
   * one URL. Upstream attempts time out after 5 s.
   */
  app?: (ctx: AppContext) => string | Promise<string>
  /** App stack: extra app registration (certificates, secrets, federated subjects). */
  register?: (ctx: AppContext) => AppRegistration | Promise<AppRegistration>
}

/** Emulator + daemon on 127.0.0.1:0, both torn down after the test. */
export async function startStack(
  t: TestContext,
  options: StackOptions & { app: NonNullable<StackOptions['app']> },
): Promise<AppStack>
export async function startStack(t: TestContext, options?: StackOptions): Promise<Stack>
export async function startStack(t: TestContext, options: StackOptions = {}): Promise<Stack | AppStack> {
  const emulatorOptions: EmulatorOptions = {
    ...options.emulator,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.app ? { entra: { mtlsOnRegularHost: true, ...options.emulator?.entra } } : {}),
  }
  const emulator = await startEmulator(emulatorOptions)
  t.after(() => emulator.close())
  const dir = await mkdtemp(join(tmpdir(), 'sidecar-test-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  // Trust the emulator's CA for Entra and the mTLS endpoints, as an operator would with caFile.
  const caFile = join(dir, 'emulator-ca.pem')
  await writeFile(caFile, emulator.caPem)
  let body: string
  let clientId: string | undefined
  if (options.app) {
    clientId = randomUUID()
    const ctx = { emulator, dir, clientId }
    registerApp(emulator.state, { clientId, ...(await options.register?.(ctx)) })
    body = [
      options.configYaml?.(emulator) ?? '',
      'defaultIdentity: app',
      'identities:',
      '  app:',
      `    tenantId: ${emulator.state.tenantId}`,
      `    clientId: ${clientId}`,
      await options.app(ctx),
    ].join('\n')
  } else {
    body = options.configYaml?.(emulator) ?? 'identities:\n  mi:\n    managedIdentity: {}\n'
  }
  const upstreamYaml = `${options.app ? '  timeoutMs: 5000\n' : ''}${options.upstreamYaml ?? ''}`
  const yaml = `listen:\n  host: ${options.listenHost ?? '127.0.0.1'}\n  port: 0\n${options.listenYaml ?? ''}upstream:\n  imdsEndpoint: ${emulator.imdsUrl}\n  authorityHost: ${emulator.entraUrl}\n  caFile: ${caFile}\n${upstreamYaml}${body}`
  const { daemon, logs } = await startDaemon(t, yaml, options)
  const get = (path: string, headers: Record<string, string> = {}) =>
    fetch(`${daemon.url}${path}`, { headers: { Metadata: 'true', ...headers } })
  const parsed = async (res: Response) => ({ status: res.status, body: await json(res) })
  const identityQuery = (identity = clientId === undefined ? undefined : 'app') =>
    identity === undefined ? '' : `identity=${encodeURIComponent(identity)}`
  const stack: Stack = {
    emulator,
    daemon,
    url: daemon.url,
    logs,
    dir,
    tenantId: emulator.state.tenantId,
    get,
    token: async (resource, identity) =>
      parsed(
        await get(
          `/token?${[`resource=${encodeURIComponent(resource)}`, identityQuery(identity)].filter(Boolean).join('&')}`,
        ),
      ),
    credential: async (identity) => parsed(await get(`/credential?${identityQuery(identity)}`)),
  }
  return clientId === undefined ? stack : { ...stack, clientId }
}

export interface DaemonOptions {
  /** Values of `${NAME}` in the YAML. */
  env?: Record<string, string>
  clock?: Clock
  random?: () => number
  socketTable?: SocketTable
  passwdFile?: string
}

/**
 * A daemon for the whole config `yaml` (parsed as `test.yaml`), its logs captured at debug level,
 * shut down after the test. `startStack` builds its config around an emulator; tests whose
 * upstream is something else (a hostile server) start the daemon alone.
 */
export async function startDaemon(
  t: TestContext,
  yaml: string,
  options: DaemonOptions = {},
): Promise<{ daemon: Daemon; logs: LogCapture }> {
  const config = parseConfig(yaml, {
    source: 'test.yaml',
    env: { ...options.env },
    ...(options.passwdFile ? { passwdFile: options.passwdFile } : {}),
  })
  const { logger, logs } = capturingLogger()
  const daemon = await Daemon.start({
    config,
    logger,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.random ? { random: options.random } : {}),
    ...(options.socketTable ? { socketTable: options.socketTable } : {}),
  })
  t.after(() => daemon.shutdown(1000))
  return { daemon, logs }
}

/** Reads a JSON body, typed loosely for assertions. */
export async function json(res: Response): Promise<Record<string, any>> {
  return (await res.json()) as Record<string, any>
}
