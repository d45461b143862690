import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SidecarClient, SidecarClientError } from '../../client-sdk/src/index.ts'
import { parseConfig } from '../../sidecar/src/config/load.ts'
import { Daemon } from '../../sidecar/src/daemon/daemon.ts'
import { startEmulator } from '../support/emulator.ts'
import { silentLogger } from '../../sidecar/src/core/log.ts'

// Construction only: nothing here ever sends a request to a non-loopback address.
test('a non-loopback endpoint is refused at construction unless allowRemote', () => {
  for (const endpoint of [
    'http://10.1.2.3:7780',
    'http://example.com',
    'https://example.com:7780',
    'http://[2001:db8::1]:7780',
    'http://localhost.example.com:7780',
    'http://127.0.0.1.nip.io:7780',
    'http://0.0.0.0:7780',
  ]) {
    assert.throws(
      () => new SidecarClient({ endpoint, env: {} }),
      (error: unknown) =>
        error instanceof SidecarClientError &&
        error.code === 'remote_endpoint_refused' &&
        /not a loopback address/.test(error.message) &&
        /allowRemote/.test(error.message),
      endpoint,
    )
    assert.ok(new SidecarClient({ endpoint, allowRemote: true, env: {} }), endpoint)
  }
  assert.throws(() => new SidecarClient({ env: { CREDENTIAL_SIDECAR_ENDPOINT: 'http://10.1.2.3:7780' } }), {
    code: 'remote_endpoint_refused',
  })
})

test('loopback endpoints and Unix sockets are accepted', () => {
  for (const endpoint of [
    'http://127.0.0.1:7780',
    'http://127.8.9.10:1',
    'http://[::1]:7780',
    'http://localhost:7780',
    'http://LOCALHOST:7780/prefix',
    'unix:/run/credential-sidecar/sidecar.sock',
  ]) {
    assert.ok(new SidecarClient({ endpoint, env: {} }), endpoint)
  }
  assert.ok(new SidecarClient({ env: {} }), 'default http://127.0.0.1:7780')
})

test('malformed endpoints and options are refused with the option named', () => {
  const cases: [ConstructorParameters<typeof SidecarClient>[0], string, RegExp][] = [
    [{ endpoint: 'ftp://127.0.0.1:21' }, 'invalid_endpoint', /^endpoint: .*ftp:/],
    [{ endpoint: 'unix:relative.sock' }, 'invalid_endpoint', /^endpoint: .*absolute/],
    [{ endpoint: '127.0.0.1:7780' }, 'invalid_endpoint', /^endpoint: /],
    [{ endpoint: 'http://user:pw@127.0.0.1:7780' }, 'invalid_endpoint', /^endpoint: /],
    [{ timeoutMs: 0 }, 'invalid_argument', /^timeoutMs: /],
    [{ timeoutMs: Number.NaN }, 'invalid_argument', /^timeoutMs: /],
    [{ identity: '' }, 'invalid_argument', /^identity: /],
  ]
  for (const [options, code, message] of cases) {
    assert.throws(
      () => new SidecarClient({ env: {}, ...options }),
      { code, message },
      JSON.stringify(options),
    )
  }
  assert.throws(
    () => new SidecarClient({ endpoint: 'http://user:pw@127.0.0.1:7780', env: {} }),
    (error: unknown) => {
      return error instanceof Error && !error.message.includes('pw')
    },
  )
})

test('unix:/path reaches a daemon listening on a Unix socket', async (t) => {
  const emulator = await startEmulator()
  t.after(() => emulator.close())
  const dir = mkdtempSync(join(tmpdir(), 'sdk-sock-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const socket = join(dir, 'sidecar.sock')
  const yaml =
    `listen:\n  host: 127.0.0.1\n  port: 0\n  socket: ${socket}\n` +
    `upstream:\n  imdsEndpoint: ${emulator.imdsUrl}\nidentities:\n  mi:\n    managedIdentity: {}\n`
  const daemon = await Daemon.start({
    config: parseConfig(yaml, { source: 'test.yaml', env: {} }),
    logger: silentLogger(),
  })
  t.after(() => daemon.shutdown(1000))

  const sidecar = new SidecarClient({ env: { CREDENTIAL_SIDECAR_ENDPOINT: `unix:${socket}` } })
  t.after(() => sidecar.close())
  const token = await sidecar.getToken('https://management.azure.com/.default')
  assert.equal(token.tokenType, 'Bearer')
  assert.equal(emulator.state.calls.count('imds.token'), 1)
  await assert.rejects(sidecar.getToken('https://x.invalid'), { code: 'invalid_resource' })
})
