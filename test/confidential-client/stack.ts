import { randomUUID } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { Agent, request } from 'undici'
import { parseConfig } from '../../sidecar/src/config/load.ts'
import { Daemon } from '../../sidecar/src/daemon/daemon.ts'
import { startEmulator, type Emulator } from '../../sidecar/src/emulator/emulator.ts'
import { registerApp, type AppRegistration, type SeenTokenRequest } from '../../sidecar/src/emulator/entra.ts'
import type { EmulatorSettings } from '../../sidecar/src/emulator/state.ts'
import { createLogger } from '../../sidecar/src/core/log.ts'
import { LogCapture } from '../support/stack.ts'

/**
 * Emulator + daemon for confidential-client tests, through the real daemon HTTP API. Unlike
 * `test/support/stack.ts` it sets `upstream.authorityHost` (the emulated Entra) and
 * `upstream.caFile` (the emulator's CA, written to a temp file). The emulated Entra serves its mTLS
 * endpoint on the regular host too (`mtlsOnRegularHost`): an authority host that does not start
 * with `login.` is used as-is for mTLS (contract §2), so the daemon reaches both through one URL.
 */
export interface AppStack {
  emulator: Emulator
  daemon: Daemon
  url: string
  logs: LogCapture
  /** A temp directory for certificate and token files, removed after the test. */
  dir: string
  /** The app registered in the emulated tenant. */
  clientId: string
  tenantId: string
  get(path: string, headers?: Record<string, string>): Promise<Response>
  /** GET /token?resource=…&identity=… (default identity `app`) and the parsed body. */
  token(resource: string, identity?: string): Promise<{ status: number; body: Record<string, any> }>
  /** GET /credential?identity=… (default `app`). */
  credential(identity?: string): Promise<{ status: number; body: Record<string, any> }>
}

export interface AppStackOptions {
  /**
   * The `app` identity's keys besides tenantId and clientId (YAML, indented 4 spaces), and any
   * further identities (indented 2). Called once the emulator and the temp directory exist, so it
   * can write files and register certificates.
   */
  identity: (ctx: { emulator: Emulator; dir: string; clientId: string }) => string | Promise<string>
  /** Extra app registration (certificates, secrets, federated subjects). */
  register?: (ctx: {
    emulator: Emulator
    dir: string
    clientId: string
  }) => AppRegistration | Promise<AppRegistration>
  env?: Record<string, string>
  /** Top-level YAML added to the config (e.g. `callers:`). */
  extraYaml?: string
  /** Emulator settings (e.g. `boundTokensRefused`). */
  settings?: Partial<EmulatorSettings>
  /** Sees each token request the emulated Entra receives (form body, TLS client certificate). */
  onTokenRequest?: (request: SeenTokenRequest) => void
}

export async function startAppStack(t: TestContext, options: AppStackOptions): Promise<AppStack> {
  const emulator = await startEmulator({
    entra: {
      mtlsOnRegularHost: true,
      ...(options.onTokenRequest ? { onTokenRequest: options.onTokenRequest } : {}),
    },
    ...(options.settings ? { settings: options.settings } : {}),
  })
  t.after(() => emulator.close())
  const dir = await mkdtemp(join(tmpdir(), 'cc-test-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const caFile = join(dir, 'ca.pem')
  await writeFile(caFile, emulator.caPem)
  const clientId = randomUUID()
  const ctx = { emulator, dir, clientId }
  registerApp(emulator.state, { clientId, ...(await options.register?.(ctx)) })
  const yaml = [
    'listen:',
    '  host: 127.0.0.1',
    '  port: 0',
    'upstream:',
    `  imdsEndpoint: ${emulator.imdsUrl}`,
    `  authorityHost: ${emulator.entraUrl}`,
    `  caFile: ${caFile}`,
    '  timeoutMs: 5000',
    options.extraYaml ?? '',
    'defaultIdentity: app',
    'identities:',
    '  app:',
    `    tenantId: ${emulator.state.tenantId}`,
    `    clientId: ${clientId}`,
    await options.identity(ctx),
  ].join('\n')
  const config = parseConfig(yaml, { source: 'test.yaml', env: { ...options.env } })
  const logs = new LogCapture()
  const daemon = await Daemon.start({ config, logger: createLogger({ level: 'debug', destination: logs }) })
  t.after(() => daemon.shutdown(1000))
  const get = (path: string, headers: Record<string, string> = {}) =>
    fetch(`${daemon.url}${path}`, { headers: { Metadata: 'true', ...headers } })
  const parsed = async (res: Response) => ({
    status: res.status,
    body: (await res.json()) as Record<string, any>,
  })
  return {
    emulator,
    daemon,
    url: daemon.url,
    logs,
    dir,
    clientId,
    tenantId: emulator.state.tenantId,
    get,
    token: async (resource, identity = 'app') =>
      parsed(
        await get(`/token?resource=${encodeURIComponent(resource)}&identity=${encodeURIComponent(identity)}`),
      ),
    credential: async (identity = 'app') =>
      parsed(await get(`/credential?identity=${encodeURIComponent(identity)}`)),
  }
}

/** An app certificate issued by the emulator's CA (CN defaults to `app`). */
export async function issueAppCertificate(emulator: Emulator, commonName = 'app') {
  return emulator.state.ca.issueWithNewKey({
    subject: [{ shortName: 'CN', value: commonName }],
    usage: 'client',
    validityMs: 30 * 24 * 3600_000,
  })
}

/** Calls the demo resource's whoami with `authorization`, presenting `cert` in the TLS handshake. */
export async function callDemoResource(
  emulator: Emulator,
  authorization: string,
  cert?: { certificate: string; private_key: string },
): Promise<{ status: number; body: Record<string, unknown> }> {
  const agent = new Agent({
    connect: { ca: [emulator.caPem], ...(cert ? { cert: cert.certificate, key: cert.private_key } : {}) },
  })
  try {
    const res = await request(`${emulator.resourceUrl}/api/whoami`, {
      dispatcher: agent,
      headers: { authorization },
    })
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> }
  } finally {
    await agent.close()
  }
}

/** Fails if any of `secrets` appears in the daemon's log output. */
export function secretsInLogs(logs: LogCapture, secrets: string[]): string[] {
  const text = logs.text
  return secrets.filter((secret) => secret.length >= 8 && text.includes(secret))
}
