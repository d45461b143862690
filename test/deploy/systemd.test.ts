import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { loadConfigFile } from '../../sidecar/src/config/load.ts'

const run = promisify(execFile)
const unitPath = fileURLToPath(new URL('../../deploy/systemd/credential-sidecar.service', import.meta.url))
const configPath = fileURLToPath(new URL('../../deploy/systemd/config.yaml', import.meta.url))
const unit = readFileSync(unitPath, 'utf8')

/** `Key=value` lines of the unit (all of them, in order: some keys repeat). */
function directives(key: string): string[] {
  return unit
    .split('\n')
    .filter((line) => line.startsWith(`${key}=`))
    .map((line) => line.slice(key.length + 1))
}

test('systemd-analyze verify accepts the unit', async () => {
  // verify also checks that ExecStart's executable (/usr/bin/node) exists and is executable.
  const { stdout, stderr } = await run('systemd-analyze', ['verify', unitPath])
  assert.equal(`${stdout}${stderr}`.trim(), '')
})

test('systemd-analyze security rates the unit 2.0 or lower', async () => {
  const { stdout } = await run('systemd-analyze', ['security', '--offline=true', '--no-pager', unitPath])
  const match = /Overall exposure level for credential-sidecar\.service: (\d+\.\d+)/.exec(stdout)
  assert.ok(match, stdout)
  const exposure = Number(match[1])
  assert.ok(
    exposure <= 2.0,
    `exposure ${exposure}: ${stdout
      .split('\n')
      .filter((l) => l.includes('✗'))
      .join('\n')}`,
  )
})

test('the unit runs the production install with the system Node.js, never the dev-only node package', () => {
  const [execStart, ...more] = directives('ExecStart')
  assert.equal(more.length, 0)
  assert.equal(
    execStart,
    '/usr/bin/node --max-semi-space-size=1 --max-old-space-size=128 /opt/credential-sidecar/node_modules/credential-sidecar/bin/credential-sidecar.js --config /etc/credential-sidecar/config.yaml',
  )
  assert.ok(!unit.includes('node_modules/.bin/node'))
})

test('the unit and its config agree on the secret and the socket', async () => {
  const [credential] = directives('LoadCredential')
  assert.equal(credential, 'identity-header:/etc/credential-sidecar/identity-header')
  const [runtimeDirectory] = directives('RuntimeDirectory')
  assert.equal(runtimeDirectory, 'credential-sidecar')
  const config = await loadConfigFile(configPath, {})
  // systemd exposes LoadCredential= files under /run/credentials/<unit name>/.
  assert.equal(config.callers.secretFile, '/run/credentials/credential-sidecar.service/identity-header')
  assert.equal(config.listen.socket, `/run/${runtimeDirectory}/sidecar.sock`)
  assert.equal(config.listen.host, '127.0.0.1')
})

test('the hardening the issue names is there', () => {
  for (const [key, value] of [
    ['DynamicUser', 'yes'],
    ['ProtectSystem', 'strict'],
    ['NoNewPrivileges', 'yes'],
    ['RestrictAddressFamilies', 'AF_INET AF_INET6 AF_UNIX AF_NETLINK'],
    ['CapabilityBoundingSet', ''],
    ['UMask', '0077'],
  ] as const) {
    assert.deepEqual(directives(key), [value], key)
  }
  assert.ok(directives('SystemCallFilter').includes('@system-service'))
  // V8's JIT needs writable executable memory; callers.allow reads other users' /proc/net/tcp rows.
  assert.deepEqual(directives('MemoryDenyWriteExecute'), [])
  assert.deepEqual(directives('PrivateUsers'), [])
})
