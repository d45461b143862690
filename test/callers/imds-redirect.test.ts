import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { binPath, startProcess } from '../process/process.ts'
import { uids } from './as-uid.ts'

/**
 * The nftables redirect recipe, for real: a network namespace made for the test (never the
 * host's), shaped like an Azure VM (an `eth0` with 10.0.0.4/24 and a route to 169.254.169.254),
 * the emulator standing for the real IMDS, the daemon as its operator would run it (the bin, a
 * config with no upstream: IMDS at 169.254.169.254), deploy/nftables/imds-redirect.nft and
 * imds-lockdown.nft loaded as shipped (with the sidecar's user and port filled in), and unmodified
 * clients that only know 169.254.169.254: Python azure-identity's ManagedIdentityCredential and
 * curl, each run as another uid.
 */

const root = fileURLToPath(new URL('../../', import.meta.url))
const emulatorScript = fileURLToPath(new URL('./netns/emulator.ts', import.meta.url))
const mgmt = 'https://management.azure.com'

function cannotRun(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces and nftables are Linux-only'
  if (process.getuid?.() !== 0) return 'creating a network namespace needs root (CI runs as root)'
  for (const tool of [
    '/usr/sbin/ip',
    '/usr/sbin/nft',
    '/usr/bin/setpriv',
    '/usr/bin/curl',
    '/usr/bin/python3',
  ])
    if (!existsSync(tool)) return `${tool} is missing (.ci/run installs it)`
  if (!existsSync('/usr/lib/python3/dist-packages/azure/identity'))
    return 'python3-azure is missing (.ci/run installs it)'
  return undefined
}

const skip = cannotRun()

/** The sidecar runs as root in the test: the recipes' user becomes uid 0. */
const sidecarUid = 0

/** Runs `command` inside the namespace as `uid` (setpriv drops root there), with a bare environment. */
function runAs(
  ns: string,
  uid: number,
  command: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      '/usr/sbin/ip',
      [
        'netns',
        'exec',
        ns,
        '/usr/bin/setpriv',
        `--reuid=${uid}`,
        `--regid=${uid}`,
        '--clear-groups',
        ...command,
      ],
      // No AZURE_*, IDENTITY_*, MSI_* variable: the client knows nothing but IMDS's fixed address.
      { cwd: '/', env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent', LANG: 'C.UTF-8' }, timeout: 60_000 },
      (error, stdout, stderr) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    )
  })
}

/** An unmodified Python app: `ManagedIdentityCredential()` with no argument and no environment. */
const pythonClient = `
import base64, json
from azure.identity import ManagedIdentityCredential
try:
    token = ManagedIdentityCredential().get_token('${mgmt}/.default')
    payload = token.token.split('.')[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + '=' * (-len(payload) % 4)))
    print(json.dumps({'ok': True, 'appid': claims['appid']}))
except Exception as error:
    print(json.dumps({'ok': False, 'error': type(error).__name__ + ': ' + str(error)}))
`

async function python(ns: string, uid: number): Promise<{ ok: boolean; appid?: string; error?: string }> {
  const { stdout, stderr } = await runAs(ns, uid, ['/usr/bin/python3', '-c', pythonClient])
  assert.ok(stdout.trim(), `python as uid ${uid} printed nothing: ${stderr}`)
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as { ok: boolean; appid?: string; error?: string }
}

async function curl(
  ns: string,
  uid: number,
  url: string,
  options: string[] = [],
): Promise<{ status: number; body: Record<string, any> }> {
  const { stdout } = await runAs(ns, uid, [
    '/usr/bin/curl',
    ...options,
    '-s',
    '--max-time',
    '10',
    '-H',
    'Metadata: true',
    '-w',
    '\n%{http_code}',
    url,
  ])
  const at = stdout.lastIndexOf('\n')
  return {
    status: Number(stdout.slice(at + 1)),
    body: at > 0 ? (JSON.parse(stdout.slice(0, at)) as Record<string, any>) : {},
  }
}

/** A namespace shaped like an Azure VM; deleted when the test ends, also on failure. */
function vmNamespace(t: TestContext): string {
  const ns = `csr-redirect-${process.pid}`
  const ip = (...args: string[]) => execFileSync('/usr/sbin/ip', args, { stdio: 'pipe' })
  try {
    ip('netns', 'del', ns) // a leftover of a killed run
  } catch {}
  ip('netns', 'add', ns)
  t.after(() => {
    try {
      ip('netns', 'del', ns)
    } catch {}
  })
  ip('-n', ns, 'link', 'set', 'lo', 'up')
  // eth0 as on a VM; its peer end stays in the namespace, nothing leaves it.
  ip('-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0-peer')
  ip('-n', ns, 'addr', 'add', '10.0.0.4/24', 'dev', 'eth0')
  ip('-n', ns, 'link', 'set', 'eth0', 'up')
  ip('-n', ns, 'link', 'set', 'eth0-peer', 'up')
  ip('-n', ns, 'route', 'add', '169.254.169.254/32', 'dev', 'eth0')
  return ns
}

function nft(ns: string, rules: string): void {
  execFileSync('/usr/sbin/ip', ['netns', 'exec', ns, '/usr/sbin/nft', '-f', '-'], {
    input: rules,
    stdio: 'pipe',
  })
}

/** The shipped recipe with the operator's two values filled in, as its comment says to. */
function recipe(file: string, port: number): string {
  return readFileSync(join(root, 'deploy/nftables', file), 'utf8')
    .replace(/^define sidecar_user = .*$/m, `define sidecar_user = ${sidecarUid}`)
    .replace(/^define sidecar_port = .*$/m, `define sidecar_port = ${port}`)
    .replaceAll('"credential-sidecar"', String(sidecarUid))
}

test(
  "nftables redirect: unmodified clients that only know 169.254.169.254 get their own uid's identity",
  { skip, timeout: 180_000 },
  async (t) => {
    const ns = vmNamespace(t)
    const launcher = ['/usr/sbin/ip', 'netns', 'exec', ns]

    // The "real IMDS": the emulator, reached by the sidecar's uid (only) at 169.254.169.254:80.
    const emulator = startProcess(t, [], {}, emulatorScript, { launcher })
    const { imdsUrl, clientIds } = (await emulator.waitFor('emulator', 60_000)) as {
      imdsUrl: string
      clientIds: string[]
    }
    const [systemAssigned, uamiOne] = clientIds as [string, string]
    nft(
      ns,
      [
        'table ip test_real_imds {',
        '  chain output {',
        '    type nat hook output priority -100; policy accept;',
        `    meta skuid ${sidecarUid} ip daddr 169.254.169.254 tcp dport 80 dnat to 127.0.0.1:${new URL(imdsUrl).port}`,
        '  }',
        '}',
      ].join('\n'),
    )

    const dir = mkdtempSync(join(tmpdir(), 'sidecar-redirect-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    const config = join(dir, 'config.yaml')
    writeFileSync(
      config,
      [
        'listen:',
        '  host: 127.0.0.1',
        '  port: 0',
        'callers:',
        '  allow:',
        `    - uid: ${uids.alice}`,
        '      identities: [mi]',
        `    - uid: ${uids.nobody}`,
        '      identities: [one]',
        'identities:',
        '  mi:',
        '    managedIdentity: {}',
        '  one:',
        '    managedIdentity:',
        `      userAssignedClientId: "${uamiOne}"`,
        '',
      ].join('\n'),
    )
    const daemon = startProcess(t, ['--config', config], {}, undefined, { launcher })
    const listening = await daemon.waitFor('listening', 60_000)
    const port = Number(new URL(listening['url'] as string).port)
    nft(ns, recipe('imds-redirect.nft', port))
    nft(ns, recipe('imds-lockdown.nft', port))

    // Python azure-identity, no argument, no environment: IMDS at 169.254.169.254.
    const alice = await python(ns, uids.alice)
    assert.deepEqual(alice, { ok: true, appid: systemAssigned }, 'alice: mi, the system-assigned identity')
    const nobody = await python(ns, uids.nobody)
    assert.deepEqual(nobody, { ok: true, appid: uamiOne }, 'nobody: one, its first listed identity')
    const mallory = await python(ns, uids.mallory)
    assert.equal(mallory.ok, false)
    assert.match(mallory.error ?? '', /uid 64102 is not listed in callers\.allow/)

    // curl, the IMDS request as documented for Azure VMs.
    const imds = `http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(mgmt)}`
    const byCurl = await curl(ns, uids.nobody, imds)
    assert.equal(byCurl.status, 200, JSON.stringify(byCurl.body))
    assert.equal(byCurl.body['client_id'], uamiOne)
    // A dual-stack client (Java's default): an AF_INET6 socket connected to ::ffff:169.254.169.254,
    // listed in /proc/net/tcp6, still asking for Host 169.254.169.254.
    const dualStack = await curl(ns, uids.nobody, imds, [
      '--connect-to',
      '169.254.169.254:80:[::ffff:169.254.169.254]:80',
    ])
    assert.equal(dualStack.status, 200, JSON.stringify(dualStack.body))
    assert.equal(dualStack.body['client_id'], uamiOne)
    const refused = await curl(ns, uids.mallory, imds)
    assert.equal(refused.status, 403)
    assert.equal(refused.body['error'], 'forbidden')
    // Another uid asking for an identity its entry does not list is refused, not redirected around.
    const asOther = await curl(ns, uids.alice, `${imds}&client_id=${uamiOne}`)
    assert.equal(asOther.status, 403)

    // The lockdown catches what the redirect does not: other ports of the metadata address.
    const otherPort = await runAs(ns, uids.alice, [
      '/usr/bin/curl',
      '-s',
      '--max-time',
      '2',
      'http://169.254.169.254:8080/',
    ])
    assert.notEqual(otherPort.code, 0, 'dropped')

    // doctor, as root, says the redirect is in place (uid 65534 is answered by the sidecar).
    const doctor = await new Promise<string>((resolve) =>
      execFile(
        '/usr/sbin/ip',
        ['netns', 'exec', ns, process.execPath, binPath, 'doctor', '--config', config, '--json'],
        { timeout: 60_000 },
        (_error, stdout) => resolve(stdout),
      ),
    )
    const report = JSON.parse(doctor) as { ok: boolean; lockdown: { kind: string; uid: number } }
    assert.deepEqual(report.lockdown, { kind: 'redirected', uid: 65534, failed: false })
    assert.equal(report.ok, true, doctor)

    // mallory's refusals were the sidecar's own (counted there), not IMDS's.
    const metrics = await fetchMetrics(ns, port)
    const refusals = /credential_sidecar_caller_refusals_total\{[^}]*uid="64102"[^}]*\} (\d+)/.exec(
      metrics,
    )?.[1]
    assert.ok(Number(refusals) >= 2, metrics)
  },
)

/** /metrics of the daemon inside the namespace (root: not redirected, not refused: no Metadata needed). */
async function fetchMetrics(ns: string, port: number): Promise<string> {
  const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) =>
    execFile(
      '/usr/sbin/ip',
      ['netns', 'exec', ns, '/usr/bin/curl', '-s', `http://127.0.0.1:${port}/metrics`],
      (error, stdout) => (error ? reject(error) : resolve({ stdout })),
    ),
  )
  return stdout
}
