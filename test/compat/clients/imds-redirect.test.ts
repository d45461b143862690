import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface, type Interface } from 'node:readline'
import { armAudience, azBaseEnv, azCommand, azConfigDir, azResult } from './azure-cli-env.ts'
import {
  assertDaemonToken,
  assertRoute,
  buildAdalToken,
  runClient,
  type ClientResult,
  type DaemonView,
} from './harness.ts'

/**
 * The clients that only know IMDS's fixed address, unmodified and with no managed identity variable
 * at all, through a packet redirect of 169.254.169.254:80 to the daemon (the IMDS route accepts
 * `Host: 169.254.169.254`): Go adal, the Azure CLI (`az login --identity`, msrestazure's IMDS
 * provider) and Python azure-identity's ManagedIdentityCredential, system- and user-assigned.
 *
 * All in a network namespace made for the test and deleted after it (never the host's): the
 * emulator, the daemon and az's stand-in Resource Manager run in a child process inside it
 * (netns-stack.ts), and one nftables rule redirects every connection to 169.254.169.254:80 there.
 * The per-uid recipe (deploy/nftables, the sidecar's own uid exempt, callers.allow by uid) is
 * test/callers/imds-redirect.test.ts's subject; here every process is root and the daemon's upstream
 * is the emulator on 127.0.0.1, so one unconditional rule is enough.
 */
const resource = 'https://management.azure.com'
const ip = '/usr/sbin/ip'
const ns = `csr-clients-${process.pid}`

function cannotRun(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces and nftables are Linux-only'
  if (process.getuid?.() !== 0) return 'creating a network namespace needs root (CI runs as root)'
  for (const tool of [ip, '/usr/sbin/nft'])
    if (!existsSync(tool)) return `${tool} is missing (.ci/run installs it)`
  return undefined
}
const skip = cannotRun()

interface NetnsStack {
  url: string
  dir: string
  armUrl: string
  subscriptionId: string
  clientIds: string[]
}

let child: ChildProcessWithoutNullStreams
let lines: Interface
let stack: NetnsStack
let work: string
let adal: string

/** One request line to netns-stack.ts, its one answer line. */
async function ask(request: Record<string, string>): Promise<any> {
  const answer = new Promise<string>((resolve) => lines.once('line', resolve))
  child.stdin.write(`${JSON.stringify(request)}\n`)
  return JSON.parse(await answer)
}

/** The daemon as seen through netns-stack.ts, its logs counted from now on. */
async function daemonFromNow(): Promise<DaemonView> {
  const { records: earlier } = (await ask({ op: 'logs' })) as { records: unknown[] }
  return {
    served: (resource, identity) => ask({ op: 'served', resource, identity }),
    logs: async () => {
      const { records, text } = (await ask({ op: 'logs' })) as {
        records: Record<string, unknown>[]
        text: string
      }
      return { records: records.slice(earlier.length), text }
    },
  }
}

/** Runs a client inside the namespace, as root, with only `env` (no AZURE_*, IDENTITY_*, MSI_*). */
const inNamespace = (file: string, args: string[], env: Record<string, string> = {}) =>
  runClient(ip, ['netns', 'exec', ns, file, ...args], env, { timeoutMs: 90_000 })

const run = (...args: string[]) => execFileSync(ip, args, { stdio: 'pipe' })

before(async () => {
  if (skip) return
  work = await mkdtemp(join(tmpdir(), 'sidecar-redirect-clients-'))
  adal = await buildAdalToken(work)
  try {
    run('netns', 'del', ns) // a leftover of a killed run
  } catch {}
  run('netns', 'add', ns)
  run('-n', ns, 'link', 'set', 'lo', 'up')
  // A route to 169.254.169.254 as on an Azure VM (an eth0 whose peer stays in the namespace).
  run('-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0-peer')
  run('-n', ns, 'addr', 'add', '10.0.0.4/24', 'dev', 'eth0')
  run('-n', ns, 'link', 'set', 'eth0', 'up')
  run('-n', ns, 'link', 'set', 'eth0-peer', 'up')
  run('-n', ns, 'route', 'add', '169.254.169.254/32', 'dev', 'eth0')
  child = spawn(ip, ['netns', 'exec', ns, process.execPath, join(import.meta.dirname, 'netns-stack.ts')], {
    stdio: 'pipe',
  })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  lines = createInterface({ input: child.stdout })
  const ready = new Promise<string>((resolve, reject) => {
    lines.once('line', resolve)
    child.once('exit', (code) => reject(new Error(`netns-stack exited ${code}: ${stderr}`)))
  })
  stack = JSON.parse(await ready) as NetnsStack
  const port = new URL(stack.url).port
  execFileSync(ip, ['netns', 'exec', ns, '/usr/sbin/nft', '-f', '-'], {
    stdio: 'pipe',
    input: [
      'table ip clients_imds_redirect {',
      '  chain output {',
      '    type nat hook output priority -100; policy accept;',
      `    ip daddr 169.254.169.254 tcp dport 80 redirect to :${port}`,
      '  }',
      '}',
    ].join('\n'),
  })
})

after(async () => {
  if (skip) return
  if (child) {
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.stdin.end()
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))])
    child.kill()
  }
  try {
    run('netns', 'del', ns)
  } catch {}
  if (work) await rm(work, { recursive: true, force: true })
})

for (const assigned of ['system', 'user'] as const) {
  const clientId = () => stack.clientIds[assigned === 'system' ? 0 : 1]!
  const identity = assigned === 'system' ? 'mi' : 'uami'

  test(`go adal, no environment: IMDS at 169.254.169.254, ${assigned}-assigned`, { skip }, async () => {
    const daemon = await daemonFromNow()
    const result = await inNamespace(adal, [resource, ...(assigned === 'user' ? [clientId()] : [])])
    await assertDaemonToken(daemon, result, { identity, resource, appid: clientId() })
    await assertRoute(daemon, 'imds')
  })

  test(
    `azure-identity, no environment: IMDS at 169.254.169.254, ${assigned}-assigned`,
    { skip },
    async () => {
      const daemon = await daemonFromNow()
      const script = join(import.meta.dirname, 'python-identity.py')
      const result = await inNamespace('/usr/bin/python3', [
        script,
        resource,
        ...(assigned === 'user' ? [clientId()] : []),
      ])
      await assertDaemonToken(daemon, result, { identity, resource, appid: clientId() })
      await assertRoute(daemon, 'imds')
    },
  )

  test(
    `az, no environment: login --identity, get-access-token via 169.254.169.254, ${assigned}-assigned`,
    { skip },
    async () => {
      const daemon = await daemonFromNow()
      const env = azBaseEnv(await azConfigDir(work, stack.armUrl), join(stack.dir, 'emulator-ca.pem'))
      const username = assigned === 'user' ? ['--username', clientId()] : []
      const login = await inNamespace(
        azCommand,
        ['login', '--identity', ...username, '--output', 'json'],
        env,
      )
      assert.equal(login.status, 0, `${login.error ?? ''}\n${login.stderr.slice(-2000)}`)
      const { tokens } = (await ask({ op: 'arm' })) as { tokens: string[] }
      const armToken: ClientResult = { status: 0, token: tokens.at(-1)!, stderr: '' }
      await assertDaemonToken(daemon, armToken, { identity, resource: armAudience, appid: clientId() })

      const args = ['account', 'get-access-token', '--resource', resource, '--output', 'json']
      const token = azResult(await inNamespace(azCommand, args, env))
      await assertDaemonToken(daemon, token, { identity, resource, appid: clientId() })
      assert.equal(token['subscription'], stack.subscriptionId)
      await assertRoute(daemon, 'imds')
    },
  )
}
