import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { createServer } from 'node:net'
import { startEmulator } from '../support/emulator.ts'
import { startProcess } from '../process/process.ts'
import { assertServesBearerAndPop, emulatorConfigYaml, npm } from '../support/installed.ts'

const run = promisify(execFile)
const repo = fileURLToPath(new URL('../..', import.meta.url))

// Node.js 22 comes from a devDependency (test/runtimes/node22, installed by `npm ci`), never fetched
// from the registry while a test waits. Its @types/node 22 sits beside it.
const node22Runtime = join(repo, 'test', 'runtimes', 'node22', 'node_modules')
const node22 = join(node22Runtime, 'node', 'bin', 'node')

const demoScope = 'api://credential-sidecar-demo/.default'

/**
 * A user's strict TypeScript program: the platform's types (global Response, Headers, RequestInit)
 * flow through the SDK's declarations. `main` is the same for ESM (.mts) and CommonJS (.cts).
 */
const typedMain = `
  const sidecar = new SidecarClient({ endpoint: process.env['ENDPOINT']! })
  const bearer: SidecarToken = await sidecar.getToken('https://management.azure.com/.default')
  const init: RequestInit & SidecarFetchInit = {
    scope: '${demoScope}',
    identity: 'mi-pop',
    ca: readFileSync(process.env['CA_FILE']!, 'utf8'),
    headers: new Headers({ accept: 'application/json' }),
  }
  const r: Response = await sidecar.fetch(process.env['RESOURCE_URL'] + '/api/whoami', init)
  const headers: Headers = r.headers
  const blob: Blob = await r.clone().blob()
  const body = (await r.json()) as { scheme?: unknown }
  const credential = sidecar.tokenCredential({ identity: 'mi' })
  const accessToken = await credential.getToken(['https://management.azure.com/.default'], {
    requestOptions: { timeout: 10_000 },
  })
  let unavailable = ''
  try {
    await new SidecarClient({ endpoint: process.env['CLOSED_ENDPOINT']! }).tokenCredential().getToken('${demoScope}')
  } catch (error) {
    if (error instanceof SidecarClientError) unavailable = error.name + ' ' + error.code
    if (error instanceof CredentialUnavailableError) unavailable += ' (CredentialUnavailableError)'
  }
  await sidecar.close()
  console.log(JSON.stringify({
    node: process.versions.node,
    bearer: bearer.tokenType,
    status: r.status,
    scheme: body.scheme,
    isResponse: r instanceof Response,
    isHeaders: headers instanceof Headers,
    isBlob: blob instanceof Blob,
    credential: accessToken?.tokenType,
    unavailable,
    from: FROM,
  }))
`
const typedEsm = `import { readFileSync } from 'node:fs'
import { CredentialUnavailableError, SidecarClient, SidecarClientError } from 'credential-sidecar-client'
import type { SidecarFetchInit, SidecarToken } from 'credential-sidecar-client'
const FROM = import.meta.resolve('credential-sidecar-client')
${typedMain}
`
const typedCjs = `import { readFileSync } from 'node:fs'
import { CredentialUnavailableError, SidecarClient, SidecarClientError } from 'credential-sidecar-client'
import type { SidecarFetchInit, SidecarToken } from 'credential-sidecar-client'
const FROM = require.resolve('credential-sidecar-client')
async function main(): Promise<void> {
${typedMain}
}
void main()
`

/** A tsconfig as strict as a careful user's, checking every declaration file (no skipLibCheck). */
function strictTsconfig(typeRoot: string, outDir: string): string {
  return JSON.stringify({
    compilerOptions: {
      strict: true,
      skipLibCheck: false,
      noUncheckedIndexedAccess: true,
      exactOptionalPropertyTypes: true,
      module: 'nodenext',
      moduleResolution: 'nodenext',
      target: 'es2022',
      lib: ['es2023'],
      typeRoots: [typeRoot],
      types: ['node'],
      outDir,
      noEmitOnError: true,
    },
    files: ['typed.mts', 'typed.cts'],
  })
}

/** The first `node` on PATH older than the SDK supports (Debian's is 20 on these machines). */
async function oldNode(): Promise<{ path: string; version: string } | undefined> {
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    const path = join(dir || '.', 'node')
    if (!existsSync(path)) continue
    const version = (
      await run(path, ['-p', 'process.versions.node']).catch(() => ({ stdout: '' }))
    ).stdout.trim()
    if (/^\d+\./.test(version) && Number(version.split('.')[0]) < 22) return { path, version }
  }
  return undefined
}

const tooOldEsm = `try {
  await import('credential-sidecar-client')
  console.log(JSON.stringify({ imported: true }))
} catch (error) {
  console.log(JSON.stringify({ name: error.name, message: error.message }))
}
`
const tooOldCjs = `try {
  require('credential-sidecar-client')
  console.log(JSON.stringify({ imported: true }))
} catch (error) {
  console.log(JSON.stringify({ name: error.name, message: error.message }))
}
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

  assert.equal((await run(node22, ['-p', 'process.versions.node'])).stdout.trim().split('.')[0], '22')
  const closed = await closedEndpoint()
  writeFileSync(join(app, 'typed.mts'), typedEsm)
  writeFileSync(join(app, 'typed.cts'), typedCjs)
  const tsc = join(repo, 'node_modules', 'typescript', 'bin', 'tsc')
  for (const [major, node, typesNode] of [
    ['22', node22, join(node22Runtime, '@types', 'node')],
    ['24', process.execPath, join(repo, 'node_modules', '@types', 'node')],
  ] as const) {
    // typeRoots/NN/node is @types/node NN from the repository's devDependencies: the project sits
    // outside the repository, so nothing else is found by walking up.
    const typeRoot = join(app, 'typeroots', major)
    mkdirSync(typeRoot, { recursive: true })
    symlinkSync(typesNode, join(typeRoot, 'node'), 'dir')
    writeFileSync(join(app, `tsconfig.${major}.json`), strictTsconfig(`./typeroots/${major}`, `out${major}`))

    await t.test(
      `a strict TypeScript program compiles against the SDK with @types/node ${major}`,
      async () => {
        const installedTypes = JSON.parse(readFileSync(join(typeRoot, 'node', 'package.json'), 'utf8')) as {
          version: string
        }
        assert.equal(installedTypes.version.split('.')[0], major)
        const compiled = await run(process.execPath, [tsc, '-p', `tsconfig.${major}.json`], {
          cwd: app,
          timeout: 120_000,
        }).catch((error: { stdout?: string; stderr?: string }) => error)
        assert.equal(`${compiled.stdout ?? ''}${compiled.stderr ?? ''}`, '', 'tsc reports nothing')
        assert.ok(existsSync(join(app, `out${major}`, 'typed.mjs')))
        assert.ok(existsSync(join(app, `out${major}`, 'typed.cjs')))
      },
    )

    for (const [script, build] of [
      ['typed.mjs', 'esm'],
      ['typed.cjs', 'cjs'],
    ] as const) {
      await t.test(
        `the compiled ${script} on Node ${major}: Bearer, a PoP fetch as a platform Response, a chain-ready credential`,
        async () => {
          const { stdout } = await run(node, [join(`out${major}`, script)], {
            cwd: app,
            env: {
              PATH: process.env['PATH'] ?? '',
              ENDPOINT: url,
              RESOURCE_URL: emulator.resourceUrl,
              CA_FILE: caFile,
              CLOSED_ENDPOINT: closed,
            },
            timeout: 30_000,
          })
          const result = JSON.parse(stdout) as Record<string, unknown>
          assert.equal(String(result['node']).split('.')[0], major)
          assert.deepEqual(
            { ...result, node: undefined, from: undefined },
            {
              node: undefined,
              from: undefined,
              bearer: 'Bearer',
              status: 200,
              scheme: 'mtls_pop',
              isResponse: true,
              isHeaders: true,
              isBlob: true,
              credential: 'Bearer',
              unavailable: 'CredentialUnavailableError connection_failed (CredentialUnavailableError)',
            },
          )
          assert.match(
            String(result['from']),
            new RegExp(`node_modules/credential-sidecar-client/dist/${build}/index\\.js$`),
          )
        },
      )
    }
  }

  const old = await oldNode()
  const engines = (
    JSON.parse(readFileSync(join(installedSdk, 'package.json'), 'utf8')) as { engines: { node: string } }
  ).engines.node
  writeFileSync(join(app, 'too-old.mjs'), tooOldEsm)
  writeFileSync(join(app, 'too-old.cjs'), tooOldCjs)
  for (const script of ['too-old.mjs', 'too-old.cjs']) {
    await t.test(
      `on an older Node.js the SDK fails from ${script} with one error naming both versions`,
      // The machine's own Node.js (Debian's, 20 here) is the older one; a machine whose every node
      // is 22 or later has none to try.
      old === undefined ? { skip: 'no Node.js older than 22 on PATH' } : {},
      async () => {
        const { stdout } = await run(old!.path, [script], { cwd: app, timeout: 30_000 })
        assert.deepEqual(JSON.parse(stdout), {
          name: 'Error',
          message: `credential-sidecar-client requires Node.js ${engines.replace('>=', '')} or later; this is Node.js ${old!.version}`,
        })
      },
    )
  }

  daemon.child.kill('SIGTERM')
  assert.deepEqual(await daemon.exit, { code: 0, signal: null })
})

/** An http:// endpoint on loopback where nothing listens (a port bound, then released). */
async function closedEndpoint(): Promise<string> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return `http://127.0.0.1:${port}`
}
