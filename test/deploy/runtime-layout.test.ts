import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { startEmulator } from '../support/emulator.ts'
import { startProcess } from '../process/process.ts'
import { assertServesBearerAndPop, emulatorConfigYaml, npm } from '../support/installed.ts'

const run = promisify(execFile)
const repo = fileURLToPath(new URL('../..', import.meta.url))
const dockerfile = readFileSync(join(repo, 'Dockerfile'), 'utf8')
/** The image's user (checked below to be what the Dockerfile says). */
const uid: number = 65532

interface Stage {
  name: string | undefined
  instructions: { op: string; args: string }[]
}

/** The Dockerfile's stages, continuation lines joined, comments dropped. */
function stages(text: string): Stage[] {
  const result: Stage[] = []
  const lines = text.replace(/\\\n\s*/g, ' ').split('\n')
  for (const line of lines.map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))) {
    const [, op = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? []
    if (op.toUpperCase() === 'FROM') {
      result.push({ name: /\sAS\s+(\S+)$/i.exec(args)?.[1], instructions: [] })
    }
    result.at(-1)?.instructions.push({ op: op.toUpperCase(), args })
  }
  return result
}

function only(stage: Stage, op: string): string[] {
  return stage.instructions.filter((i) => i.op === op).map((i) => i.args)
}

const parsed = stages(dockerfile)
const runtime = parsed.at(-1)!
const install = parsed.find((s) => s.name === 'install')
const entrypoint = JSON.parse(only(runtime, 'ENTRYPOINT')[0] ?? 'null') as string[] | null
/** The production install command, exactly as the image's install stage runs it. */
const installCommand = only(install ?? runtime, 'RUN')[0]
  ?.split('&&')[0]
  ?.trim()

test('the Dockerfile: multi-stage, production install only, numeric non-root user, exec-form bin, no HEALTHCHECK', () => {
  assert.deepEqual(
    parsed.map((s) => s.name),
    ['build', 'install', undefined],
  )
  const [user] = only(runtime, 'USER')
  assert.match(user ?? '', /^\d+:\d+$/, 'numeric uid:gid, so runAsNonRoot can be checked')
  assert.equal(Number(user!.split(':')[0]), uid)
  assert.ok(entrypoint, 'ENTRYPOINT in exec form (a JSON array): no shell at run time, signals reach node')
  assert.deepEqual(entrypoint, ['node', '/app/node_modules/credential-sidecar/bin/credential-sidecar.js'])
  assert.deepEqual(only(runtime, 'HEALTHCHECK'), [])
  assert.deepEqual(only(runtime, 'RUN'), [], 'the runtime stage runs nothing at build time')
  assert.deepEqual(only(runtime, 'COPY'), ['--from=install /app/node_modules /app/node_modules'])
  assert.equal(
    installCommand,
    'npm install --omit=dev --no-audit --no-fund --no-save /pack/credential-sidecar-*.tgz',
  )
  const ignored = readFileSync(join(repo, '.dockerignore'), 'utf8').split('\n')
  for (const pattern of ['**/node_modules', '**/dist', '.git']) assert.ok(ignored.includes(pattern), pattern)
})

/**
 * Runs a command as `uid` with `dir` mounted read-only in a private mount namespace (what a
 * container with readOnlyRootFilesystem sees). Where mount namespaces are not permitted, the copy
 * is made read-only by its modes instead (the uid owns none of it either way).
 */
async function readOnlyAs(t: TestContext, dir: string): Promise<string[]> {
  const dropPrivileges = ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--']
  try {
    await run('unshare', ['--mount', '--propagation', 'private', '--', 'true'])
  } catch (error) {
    t.diagnostic(`no mount namespace here (${String(error)}); read-only by file modes instead`)
    await run('chmod', ['-R', 'a-w', dir])
    return dropPrivileges
  }
  const script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
  return ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', script, dir, ...dropPrivileges]
}

test(
  "the image's runtime layout runs as uid 65532 from a read-only copy: --version, check-config, a token",
  { timeout: 300_000, skip: process.getuid?.() !== 0 ? 'needs root to switch uid (CI runs as root)' : false },
  async (t) => {
    const scratch = mkdtempSync(join(tmpdir(), 'credential-sidecar-image-'))
    chmodSync(scratch, 0o755)
    t.after(() => rmSync(scratch, { recursive: true, force: true }))

    // The build stage: the package exactly as `npm pack` makes it (its prepack compiles dist/).
    const pack = join(scratch, 'pack')
    mkdirSync(pack)
    await npm(['pack', '--workspace', 'sidecar', '--pack-destination', pack], repo)
    const [tarball, ...others] = readdirSync(pack)
    assert.equal(others.length, 0)

    // The install stage: the same command in an empty /app.
    const app = join(scratch, 'app')
    mkdirSync(app)
    const args = installCommand!.split(' ').slice(1, -1)
    await npm([...args, '--prefer-offline', join(pack, tarball!)], app)
    const modules = join(app, 'node_modules')
    assert.ok(existsSync(join(modules, 'credential-sidecar', 'dist', 'main.js')))
    assert.ok(!existsSync(join(modules, 'credential-sidecar', 'src')), 'no TypeScript sources')
    for (const devOnly of ['typescript', 'prettier', 'node', '@azure/identity', '@types/node']) {
      assert.ok(!existsSync(join(modules, devOnly)), `${devOnly} is a dev dependency: not in the image`)
    }
    const bin = entrypoint![1]!.replace(/^\/app\//, `${app}/`)
    assert.ok(existsSync(bin), `the ENTRYPOINT ${entrypoint![1]} exists in the install`)

    const emulator = await startEmulator()
    t.after(() => emulator.close())
    const etc = join(scratch, 'etc')
    mkdirSync(etc, { mode: 0o755 })
    writeFileSync(join(etc, 'ca.pem'), emulator.caPem, { mode: 0o644 })
    const config = join(etc, 'config.yaml')
    writeFileSync(config, emulatorConfigYaml(emulator, join(etc, 'ca.pem')), { mode: 0o644 })

    const launcher = await readOnlyAs(t, app)
    // What the image sets, and nothing of this test runner's environment.
    const env = { NODE_ENV: 'production', PATH: '/usr/bin:/bin', HOME: '/nonexistent' }
    const once = async (args: string[]) => {
      const p = startProcess(t, args, env, bin, { launcher, isolatedEnv: true })
      const exit = await p.exit
      return { ...exit, stdout: p.stdout.join('\n'), stderr: p.stderr.join('') }
    }

    const version = await once(['--version'])
    assert.equal(version.code, 0, version.stderr)
    assert.match(version.stdout, /0\.1\.0/)

    const checked = await once(['check-config', config])
    assert.equal(checked.code, 0, checked.stderr)
    assert.match(checked.stdout, /mi-pop/)

    const daemon = startProcess(t, ['--config', config], env, bin, { launcher, isolatedEnv: true })
    const { url } = (await daemon.waitFor('listening')) as { url: string }
    await daemon.waitFor('ready')
    await assertServesBearerAndPop(url)
    const status = readFileSync(`/proc/${daemon.child.pid}/status`, 'utf8')
    assert.match(status, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'))
    daemon.child.kill('SIGTERM')
    assert.deepEqual(await daemon.exit, { code: 0, signal: null })
  },
)
