import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeJwt } from 'jose'
import { issueLoopbackServerCertificate } from '../../../sidecar/src/emulator/entra.ts'
import type { EmulatorState } from '../../../sidecar/src/emulator/state.ts'
import { closeServer, listenOnLoopback } from '../../../sidecar/src/emulator/loopback-server.ts'
import type { ClientResult } from './harness.ts'

/**
 * What the Azure CLI needs besides a managed identity endpoint. `az login --identity` always lists
 * subscriptions on the active cloud's Resource Manager (`--allow-no-subscriptions` only accepts an
 * empty list), and Resource Manager is not reachable here: the tests give az a private
 * AZURE_CONFIG_DIR whose active cloud (`Emulated`, as `az cloud register` would write it) names a
 * stand-in Resource Manager on loopback, over https trusted through REQUESTS_CA_BUNDLE. The stand-in
 * records the Bearer tokens az calls it with, so a test can check they are the daemon's.
 */

/** Debian's az (its shebang names /usr/bin/python3, whatever python3 is first on PATH). */
export const azCommand = '/usr/bin/az'

/** The audience az logs in for and calls Resource Manager with (the cloud's active_directory_resource_id). */
export const armAudience = 'https://management.core.windows.net/'

export interface Arm {
  url: string
  /** Bearer tokens Resource Manager was called with. */
  tokens: string[]
  subscriptionId: string
  close(): Promise<void>
}

/** A stand-in Resource Manager on 127.0.0.1 that lists one subscription in the caller's tenant. */
export async function startArm(state: EmulatorState): Promise<Arm> {
  const { cert, key } = await issueLoopbackServerCertificate(state)
  const tokens: string[] = []
  const subscriptionId = randomUUID()
  const server = createServer({ cert, key }, (req, res) => {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1]
    if (token) tokens.push(token)
    if (!token || !req.url?.startsWith('/subscriptions?')) {
      res.writeHead(token ? 404 : 401, { 'content-type': 'application/json' })
      res.end(
        JSON.stringify({ error: { code: token ? 'NotFound' : 'AuthenticationFailed', message: req.url } }),
      )
      return
    }
    const tenantId = String(decodeJwt(token)['tid'])
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(
      JSON.stringify({
        value: [
          {
            id: `/subscriptions/${subscriptionId}`,
            subscriptionId,
            tenantId,
            displayName: 'Emulated subscription',
            state: 'Enabled',
            subscriptionPolicies: {
              locationPlacementId: 'Public_2014-09-01',
              quotaId: 'x',
              spendingLimit: 'Off',
            },
            authorizationSource: 'RoleBased',
          },
        ],
      }),
    )
  })
  const url = await listenOnLoopback(server, 'https')
  return { url, tokens, subscriptionId, close: () => closeServer(server) }
}

let commandIndex: Promise<string | undefined> | undefined

/**
 * az's command index (commandIndex.json: which module holds which command, for this az version
 * and cloud profile), built once per test process. In a config directory without one, az's first
 * command imports every command module to build it: about 4 s of the 5 s such a call takes.
 * undefined when az cannot build one here (then each az builds its own, as before).
 */
function builtCommandIndex(): Promise<string | undefined> {
  commandIndex ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'azure-command-index-'))
    try {
      await writeFile(join(dir, 'config'), '[core]\ncollect_telemetry = no\n')
      // Not logged in: az answers "Please run 'az login'", having built the index first.
      await new Promise<void>((resolve) =>
        execFile(
          azCommand,
          ['account', 'list', '--output', 'none'],
          { env: { PATH: process.env['PATH'] ?? '', AZURE_CONFIG_DIR: dir }, timeout: 120_000 },
          () => resolve(),
        ),
      )
      return await readFile(join(dir, 'commandIndex.json'), 'utf8')
    } catch {
      return undefined
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })()
  return commandIndex
}

/**
 * Writes a private AZURE_CONFIG_DIR under `parent` whose active cloud's Resource Manager is
 * `armUrl`, holding this process's built command index (what az would write there on its first
 * command; it only says where commands live).
 */
export async function azConfigDir(parent: string, armUrl: string): Promise<string> {
  const dir = await mkdtemp(join(parent, 'azure-config-'))
  const index = await builtCommandIndex()
  if (index !== undefined) await writeFile(join(dir, 'commandIndex.json'), index)
  await writeFile(
    join(dir, 'config'),
    '[cloud]\nname = Emulated\n\n[core]\ncollect_telemetry = no\noutput = json\n',
  )
  await writeFile(
    join(dir, 'clouds.config'),
    [
      '[Emulated]',
      `endpoint_resource_manager = ${armUrl}/`,
      'endpoint_active_directory = https://login.microsoftonline.com',
      `endpoint_active_directory_resource_id = ${armAudience}`,
      'endpoint_active_directory_graph_resource_id = https://graph.windows.net/',
      'endpoint_management = https://management.core.windows.net/',
      'profile = latest',
      '',
    ].join('\n'),
  )
  return dir
}

/** The environment az runs with besides the managed identity variables. */
export function azBaseEnv(configDir: string, caFile: string): Record<string, string> {
  return { AZURE_CONFIG_DIR: configDir, AZURE_CORE_COLLECT_TELEMETRY: 'no', REQUESTS_CA_BUNDLE: caFile }
}

/**
 * az's JSON output as a client result: `get-access-token`'s `accessToken` becomes the token. Its
 * `expiresOn` is a local date-time string with no zone (or a number on some paths): not compared.
 */
export function azResult(result: ClientResult): ClientResult & Record<string, unknown> {
  const { expiresOn: _localTime, ...output } = result as ClientResult & Record<string, unknown>
  return typeof output['accessToken'] === 'string' ? { ...output, token: output['accessToken'] } : output
}
