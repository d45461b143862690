/**
 * undici and the upstream.caFile secure context are loaded and built by the first upstream call
 * that needs them, not at start (issue 21): what a daemon that waits for its first caller, or only
 * calls IMDS over plain HTTP, never pays for.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import * as undici from 'undici'
import { trustingConnector } from '../../sidecar/src/upstream/tls.ts'
import { startEmulator } from '../support/emulator.ts'
import { startProcess } from '../process/process.ts'

test('trustingConnector: plain HTTP builds no TLS context; HTTPS trusts the extra CA, built once', async (t) => {
  const emulator = await startEmulator()
  t.after(() => emulator.close())
  const plain = createServer((_req, res) => res.end('plain'))
  await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve))
  t.after(() => plain.close())
  const built: undici.buildConnector.BuildOptions[] = []
  const connect = trustingConnector(
    {
      buildConnector: (options = {}) => {
        built.push(options)
        return undici.buildConnector(options)
      },
    },
    [emulator.caPem],
  )
  assert.ok(connect)
  const agent = new undici.Agent({ connect })
  t.after(() => agent.close())

  const { port } = plain.address() as { port: number }
  const res = await undici.request(`http://127.0.0.1:${port}/`, { dispatcher: agent })
  assert.equal(await res.body.text(), 'plain')
  assert.equal(built.length, 1)
  assert.ok(!('secureContext' in built[0]!), 'no secure context for plain HTTP')

  // The emulator's Entra is HTTPS under its own CA: only the extra CA makes it verify.
  for (let i = 0; i < 2; i++) {
    const tls = await undici.request(`${emulator.entraUrl}/common/discovery/instance`, { dispatcher: agent })
    await tls.body.dump()
    assert.ok(tls.statusCode > 0)
  }
  assert.equal(built.length, 2, 'one TLS connector, built by the first HTTPS connection')
  assert.ok('secureContext' in built[1]!)

  // Node's defaults alone do not trust it.
  const untrusting = new undici.Agent()
  t.after(() => untrusting.close())
  await assert.rejects(
    undici.request(`${emulator.entraUrl}/common/discovery/instance`, { dispatcher: untrusting }),
    /certificate/i,
  )
})

test('trustingConnector: without extra CAs undici keeps its own connector', () => {
  assert.equal(trustingConnector(undici, []), undefined)
})

test('the daemon is ready without having loaded undici; its first upstream call loads it', async (t) => {
  const emulator = await startEmulator()
  t.after(() => emulator.close())
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-lazy-undici-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  chmodSync(dir, 0o755)
  const loaded = join(dir, 'modules.txt')
  writeFileSync(loaded, '')
  const hook = join(dir, 'hook.mjs')
  writeFileSync(
    hook,
    `import { appendFileSync } from 'node:fs'\nimport { registerHooks } from 'node:module'\nregisterHooks({ load(url, context, next) { appendFileSync(${JSON.stringify(loaded)}, url + '\\n'); return next(url, context) } })\n`,
  )
  writeFileSync(join(dir, 'ca.pem'), emulator.caPem, { mode: 0o644 })
  const config = join(dir, 'config.yaml')
  writeFileSync(
    config,
    `listen:\n  port: 0\nupstream:\n  imdsEndpoint: ${emulator.imdsUrl}\n  authorityHost: ${emulator.entraUrl}\n  caFile: ${join(dir, 'ca.pem')}\nidentities:\n  mi:\n    managedIdentity: {}\n`,
  )
  const bin = pathToFileURL(join(import.meta.dirname, '..', '..', 'sidecar', 'bin', 'credential-sidecar.js'))
  const daemon = startProcess(t, ['--config', config], {}, undefined, {
    entry: [process.execPath, '--import', pathToFileURL(hook).href, bin.pathname],
  })
  const listening = await daemon.waitFor('listening')
  await daemon.waitFor('ready')
  const undiciFiles = () =>
    readFileSync(loaded, 'utf8')
      .split('\n')
      .filter((url) => url.includes('/node_modules/undici/'))
  assert.deepEqual(undiciFiles(), [], 'no undici module at start')

  const res = await fetch(`${listening['url']}/token?resource=https://management.azure.com`, {
    headers: { Metadata: 'true' },
  })
  assert.equal(res.status, 200)
  assert.equal(((await res.json()) as Record<string, unknown>)['token_type'], 'Bearer')
  assert.ok(undiciFiles().length > 0, 'the first IMDS call loaded undici')
  daemon.child.kill('SIGTERM')
  assert.equal((await daemon.exit).code, 0)
})
