import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { startEmulator } from '../support/emulator.ts'
import { startProcess } from '../process/process.ts'
import { assertServesBearerAndPop, emulatorConfigYaml, npm } from '../support/installed.ts'

const run = promisify(execFile)
const repo = fileURLToPath(new URL('../..', import.meta.url))

const sdkEsm = `import { SidecarClient } from 'credential-sidecar-client'
const sidecar = new SidecarClient({ endpoint: process.env.ENDPOINT })
const t = await sidecar.getToken('https://management.azure.com/.default')
console.log(JSON.stringify({ node: process.versions.node, tokenType: t.tokenType, fresh: t.expiresOnTimestamp > Date.now(), from: import.meta.resolve('credential-sidecar-client') }))
process.exit(0)
`
const sdkCjs = `const { SidecarClient } = require('credential-sidecar-client')
const sidecar = new SidecarClient({ endpoint: process.env.ENDPOINT })
sidecar.getToken('https://management.azure.com/.default').then((t) => {
  console.log(JSON.stringify({ node: process.versions.node, tokenType: t.tokenType, fresh: t.expiresOnTimestamp > Date.now(), from: require.resolve('credential-sidecar-client') }))
  process.exit(0)
})
`

test('npm pack tarballs install outside the repository and work there', { timeout: 300_000 }, async (t) => {
  // One build and one pack for the whole file: `npm pack` runs each package's prepack (= build).
  const scratch = mkdtempSync(join(tmpdir(), 'credential-sidecar-packaging-'))
  t.after(() => rmSync(scratch, { recursive: true, force: true }))
  const tarballs = join(scratch, 'tarballs')
  mkdirSync(tarballs)
  await npm(
    ['pack', '--workspace', 'sidecar', '--workspace', 'client-sdk', '--pack-destination', tarballs],
    repo,
  )
  const packed = readdirSync(tarballs).sort()
  assert.deepEqual(packed, ['credential-sidecar-0.1.0.tgz', 'credential-sidecar-client-0.1.0.tgz'])

  const app = join(scratch, 'app')
  mkdirSync(app)
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'scratch-app', private: true }))
  await npm(
    ['install', '--prefer-offline', '--no-audit', '--no-fund', ...packed.map((f) => join(tarballs, f))],
    app,
  )
  const installedDaemon = join(app, 'node_modules', 'credential-sidecar')
  const installedSdk = join(app, 'node_modules', 'credential-sidecar-client')

  await t.test('the packages hold compiled JavaScript and declarations, no TypeScript sources', () => {
    assert.ok(existsSync(join(installedDaemon, 'dist', 'main.js')))
    assert.ok(!existsSync(join(installedDaemon, 'src')), 'the daemon runs from dist/, never from sources')
    for (const file of [
      'esm/index.js',
      'esm/index.d.ts',
      'cjs/index.js',
      'cjs/index.d.ts',
      'cjs/package.json',
    ])
      assert.ok(existsSync(join(installedSdk, 'dist', file)), file)
    assert.ok(!existsSync(join(installedSdk, 'src')))
  })

  const emulator = await startEmulator()
  t.after(() => emulator.close())
  const caFile = join(scratch, 'emulator-ca.pem')
  writeFileSync(caFile, emulator.caPem)
  const config = join(scratch, 'config.yaml')
  writeFileSync(config, emulatorConfigYaml(emulator, caFile))
  const daemon = startProcess(
    t,
    ['--config', config],
    {},
    join(app, 'node_modules', '.bin', 'credential-sidecar'),
  )
  const { url } = (await daemon.waitFor('listening')) as { url: string }
  await daemon.waitFor('ready')

  await t.test('the installed bin serves tokens from the emulator (Bearer and mtls_pop)', async () => {
    await assertServesBearerAndPop(url)
  })

  // A second Node.js line: the registry's `node@22` package, through npm's exec cache. (Not a
  // devDependency alias: two packages both named "node" fight over node_modules/.bin/node.)
  const node22 = (
    await npm(['exec', '--yes', '--package=node@22', '--', 'node', '-p', 'process.execPath'], scratch)
  ).stdout.trim()
  const node22Version = (await run(node22, ['--version'])).stdout.trim()
  assert.match(node22Version, /^v22\./, `${node22} is really Node.js 22`)
  writeFileSync(join(app, 'sdk.mjs'), sdkEsm)
  writeFileSync(join(app, 'sdk.cjs'), sdkCjs)
  for (const [node, major] of [
    [process.execPath, '24'],
    [node22, '22'],
  ] as const) {
    for (const script of ['sdk.mjs', 'sdk.cjs']) {
      await t.test(`the installed SDK from ${script} on Node ${major} gets a token`, async () => {
        const { stdout } = await run(node, [script], {
          cwd: app,
          env: { PATH: process.env['PATH'] ?? '', ENDPOINT: url },
          timeout: 30_000,
        })
        const result = JSON.parse(stdout) as { node: string; tokenType: string; fresh: boolean; from: string }
        assert.equal(result.node.split('.')[0], major)
        assert.equal(result.tokenType, 'Bearer')
        assert.equal(result.fresh, true)
        const build = script === 'sdk.mjs' ? 'esm' : 'cjs'
        assert.match(
          result.from,
          new RegExp(`node_modules/credential-sidecar-client/dist/${build}/index\\.js$`),
        )
      })
    }
  }

  daemon.child.kill('SIGTERM')
  assert.deepEqual(await daemon.exit, { code: 0, signal: null })
})
