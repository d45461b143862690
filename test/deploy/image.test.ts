/**
 * The container image, built and run as a user would: `podman build` of the real Dockerfile from
 * this checkout (its .dockerignore honoured), then `podman run --read-only --cap-drop ALL --user
 * 65532` of the result: --version, a Bearer and an mTLS PoP token from the emulator, SIGTERM →
 * exit 0, and `inject -` on stdin.
 *
 * No container registry is reachable from CI, so the Dockerfile's base image
 * (node:24-bookworm-slim) is a local stand-in imported under that exact name into a private podman
 * store: `debootstrap --variant=minbase bookworm` from the machine's Debian mirror, plus the Node 24
 * binary of the `node` devDependency and npm. If the machine's npm trusts an extra CA (a
 * TLS-intercepting proxy in front of the registry), the stand-in's npm is given the same trust in
 * its global npmrc: the product's Dockerfile never sees it. Everything lives under one directory
 * (CREDENTIAL_SIDECAR_IMAGE_TEST_CACHE, default /var/tmp/credential-sidecar-image-test), keyed by
 * its inputs, so later runs reuse the stand-in and podman's layer cache.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import {
  chmodSync,
  copyFileSync,
  cpSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { rootCertificates } from 'node:tls'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments } from 'yaml'
import { startEmulator } from '../support/emulator.ts'
import { startProcess } from '../process/process.ts'
import { assertServesBearerAndPop, emulatorConfigYaml, npm } from '../support/installed.ts'

const repo = fileURLToPath(new URL('../..', import.meta.url))
const version = (
  JSON.parse(readFileSync(join(repo, 'sidecar', 'package.json'), 'utf8')) as { version: string }
).version
const cacheRoot =
  process.env['CREDENTIAL_SIDECAR_IMAGE_TEST_CACHE'] ?? '/var/tmp/credential-sidecar-image-test'
/** Changing how the stand-in base image is made: bump this to rebuild it everywhere. */
const recipe = 1
/** npm for the stand-in when node_modules/npm is absent (the `node` package carries none). */
const npmVersion = '11.21.3'
const image = 'localhost/credential-sidecar:image-test'
/** The run flags under test: what the README and the Kubernetes manifests ask for. */
const hardened = ['--read-only', '--read-only-tmpfs=false', '--cap-drop', 'ALL', '--user', '65532']
const uid = 65532

/** The base image every FROM of the Dockerfile names, fully qualified as podman stores it. */
function baseImage(): string {
  const froms = readFileSync(join(repo, 'Dockerfile'), 'utf8')
    .split('\n')
    .map((line) => /^FROM\s+(\S+)/i.exec(line.trim())?.[1])
    .filter((name): name is string => name !== undefined)
  const names = [...new Set(froms)]
  assert.deepEqual(names, ['node:24-bookworm-slim'], 'every stage starts from node:24-bookworm-slim')
  return `docker.io/library/${names[0]}`
}

function skipReason(): string | false {
  if (process.platform !== 'linux') return 'needs Linux containers'
  if (process.getuid?.() !== 0) return 'needs root: debootstrap and a private podman store (CI runs as root)'
  for (const tool of ['podman', 'debootstrap']) {
    if (spawnSync(tool, ['--version']).error) return `${tool} is not installed (bash .ci/run installs it)`
  }
  return false
}

interface Ran {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a command to its end (killed after `timeoutMs`), `input` a file given as its stdin. */
async function exec(
  command: string,
  args: string[],
  options: { timeoutMs: number; input?: string; cwd?: string; env?: NodeJS.ProcessEnv },
): Promise<Ran> {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: [options.input ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  })
  if (options.input) createReadStream(options.input).pipe(child.stdin!)
  const stdout: Buffer[] = []
  const stderr: Buffer[] = []
  child.stdout!.on('data', (chunk: Buffer) => stdout.push(chunk))
  child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk))
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs)
  const [code] = (await once(child, 'close')) as [number | null]
  clearTimeout(timer)
  return {
    code,
    stdout: Buffer.concat(stdout).toString('utf8'),
    stderr: Buffer.concat(stderr).toString('utf8'),
  }
}

async function ok(command: string, args: string[], options: Parameters<typeof exec>[2]): Promise<string> {
  const ran = await exec(command, args, options)
  assert.equal(ran.code, 0, `${command} ${args.join(' ')}: exit ${ran.code}\n${ran.stderr.slice(-4000)}`)
  return ran.stdout
}

/** Holds an exclusive lock on `file` until the test ends (or this process dies). */
async function lock(t: TestContext, file: string): Promise<void> {
  const holder = spawn('flock', ['--exclusive', file, 'sh', '-c', 'echo locked && exec cat'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  t.after(() => holder.stdin!.end())
  const locked = once(holder.stdout!, 'data')
  const died = once(holder, 'close').then(() => {
    throw new Error(`flock ${file} exited`)
  })
  await Promise.race([locked, died])
}

/** podman confined to the private store under `dir`, with this machine's quirks in its config. */
function privatePodman(dir: string) {
  // Podman's run-time state (runroot, tmp_dir) belongs on a tmpfs that a reboot empties; here it
  // sits beside the store, so it is emptied by hand when the machine has booted since.
  const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  const bootFile = join(dir, 'boot_id')
  if (!existsSync(bootFile) || readFileSync(bootFile, 'utf8') !== bootId) {
    for (const state of ['run', 'tmp']) rmSync(join(dir, state), { recursive: true, force: true })
    writeFileSync(bootFile, bootId)
  }
  mkdirSync(join(dir, 'tmp'), { recursive: true })
  const containersConf = join(dir, 'containers.conf')
  writeFileSync(
    containersConf,
    [
      '[containers]',
      // Podman's default (1048576) is refused on these hosts.
      'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]',
      '[engine]',
      // crun refuses hosts whose cgroups are in hybrid mode; runc does not.
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = "${join(dir, 'events.log')}"`,
      `tmp_dir = "${join(dir, 'tmp')}"`,
      '',
    ].join('\n'),
  )
  const storageConf = join(dir, 'storage.conf')
  writeFileSync(
    storageConf,
    `[storage]\ndriver = "overlay"\ngraphroot = "${join(dir, 'storage')}"\nrunroot = "${join(dir, 'run')}"\n`,
  )
  const env = { ...process.env, CONTAINERS_CONF: containersConf, CONTAINERS_STORAGE_CONF: storageConf }
  return {
    env,
    run: (args: string[], options: { timeoutMs?: number; input?: string; cwd?: string } = {}) =>
      exec('podman', args, { timeoutMs: 60_000, ...options, env }),
    ok: (args: string[], options: { timeoutMs?: number; input?: string; cwd?: string } = {}) =>
      ok('podman', args, { timeoutMs: 60_000, ...options, env }),
  }
}
type Podman = ReturnType<typeof privatePodman>

/** The Debian mirror this machine's apt uses (deb822 or one-line sources), for debootstrap. */
function debianMirror(): string {
  const files = ['/etc/apt/sources.list']
  try {
    files.push(...readdirSync('/etc/apt/sources.list.d').map((f) => join('/etc/apt/sources.list.d', f)))
  } catch {
    // no sources.list.d
  }
  for (const file of files.filter((f) => /\.(list|sources)$/.test(f) && existsSync(f))) {
    const text = readFileSync(file, 'utf8')
    for (const stanza of text.split(/\n\s*\n/)) {
      const uri = /^URIs:\s*(\S+)/m.exec(stanza)?.[1]
      const suites = /^Suites:\s*(.*)$/m.exec(stanza)?.[1]?.split(/\s+/) ?? []
      if (uri && suites.includes('bookworm')) return uri
    }
    for (const line of text.split('\n')) {
      const match = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/.exec(line.trim())
      if (match) return match[1]!
    }
  }
  return 'http://deb.debian.org/debian'
}

/** The CA bundle the machine's npm trusts beyond Node's own roots, or undefined. */
async function npmTrust(): Promise<string | undefined> {
  const { stdout } = await npm(['config', 'get', 'cafile'], repo)
  const cafile = stdout.trim()
  if (cafile && cafile !== 'null' && cafile !== 'undefined') return readFileSync(cafile, 'utf8')
  const extra = process.env['NODE_EXTRA_CA_CERTS']
  // npm's cafile replaces Node's roots; NODE_EXTRA_CA_CERTS adds to them.
  if (extra) return `${rootCertificates.join('\n')}\n${readFileSync(extra, 'utf8')}`
  return undefined
}

const sha256 = (...parts: (string | Buffer)[]) => {
  const hash = createHash('sha256')
  for (const part of parts) hash.update(part).update('\0')
  return hash.digest('hex').slice(0, 24)
}

/**
 * Makes (or finds, by its key) the stand-in for `name`: a minimal Debian bookworm with Node 24
 * and npm in /usr/local as the official image has them.
 */
async function standInBase(t: TestContext, podman: Podman, name: string): Promise<void> {
  const started = Date.now()
  const mirror = debianMirror()
  const arch = (await ok('dpkg', ['--print-architecture'], { timeoutMs: 10_000 })).trim()
  const rootfsKey = sha256(String(recipe), 'bookworm', 'minbase', arch, mirror)
  const nodeBinary = realpathSync(join(repo, 'node_modules', 'node', 'bin', 'node'))
  const nodeVersion = (await ok(nodeBinary, ['--version'], { timeoutMs: 10_000 })).trim()
  assert.match(nodeVersion, /^v24\./, `${nodeBinary} is Node 24`)
  const localNpm = join(repo, 'node_modules', 'npm')
  const haveNpm = existsSync(join(localNpm, 'package.json'))
  const npmSource = haveNpm
    ? (JSON.parse(readFileSync(join(localNpm, 'package.json'), 'utf8')) as { version: string }).version
    : npmVersion
  const trust = await npmTrust()
  const { stdout: registry } = await npm(['config', 'get', 'registry'], repo)
  const key = sha256(rootfsKey, readFileSync(nodeBinary), npmSource, trust ?? '', registry.trim())

  const label = 'credential-sidecar-test.base'
  const present = await podman.run([
    'image',
    'inspect',
    '--format',
    `{{index .Config.Labels "${label}"}}`,
    name,
  ])
  if (present.code === 0 && present.stdout.trim() === key) {
    t.diagnostic(`stand-in ${name} (${key}) reused`)
    return
  }

  const rootfs = join(cacheRoot, `debootstrap-${rootfsKey}`)
  if (!existsSync(rootfs)) {
    for (const old of readdirSync(cacheRoot).filter((f) => f.startsWith('debootstrap-'))) {
      rmSync(join(cacheRoot, old), { recursive: true, force: true })
    }
    const partial = `${rootfs}.partial`
    await ok('debootstrap', ['--variant=minbase', `--arch=${arch}`, 'bookworm', partial, mirror], {
      timeoutMs: 900_000,
    })
    rmSync(join(partial, 'var', 'cache', 'apt', 'archives'), { recursive: true, force: true })
    mkdirSync(join(partial, 'var', 'cache', 'apt', 'archives', 'partial'), { recursive: true })
    for (const list of readdirSync(join(partial, 'var', 'lib', 'apt', 'lists'))) {
      if (list !== 'partial' && list !== 'lock') rmSync(join(partial, 'var', 'lib', 'apt', 'lists', list))
    }
    renameSync(partial, rootfs)
    t.diagnostic(`debootstrap bookworm from ${mirror}: ${Math.round((Date.now() - started) / 1000)} s`)
  }

  // /usr/local as the official image has it: node, npm (and npx) in bin, npm in lib/node_modules.
  const extra = mkdtempSync(join(cacheRoot, 'extra-'))
  t.after(() => rmSync(extra, { recursive: true, force: true }))
  const local = join(extra, 'usr', 'local')
  mkdirSync(join(local, 'bin'), { recursive: true, mode: 0o755 })
  mkdirSync(join(local, 'etc'), { recursive: true, mode: 0o755 })
  copyFileSync(nodeBinary, join(local, 'bin', 'node'))
  chmodSync(join(local, 'bin', 'node'), 0o755)
  const npmDir = join(local, 'lib', 'node_modules', 'npm')
  mkdirSync(npmDir, { recursive: true, mode: 0o755 })
  if (haveNpm) {
    cpSync(localNpm, npmDir, { recursive: true, verbatimSymlinks: true })
  } else {
    const tarball = join(cacheRoot, `npm-${npmVersion}.tgz`)
    if (!existsSync(tarball)) await npm(['pack', `npm@${npmVersion}`, '--pack-destination', cacheRoot], repo)
    // npm bundles its dependencies: its tarball unpacked is npm installed.
    await ok('tar', ['-xzf', tarball, '-C', npmDir, '--strip-components=1', '--no-same-owner'], {
      timeoutMs: 60_000,
    })
  }
  symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(local, 'bin', 'npm'))
  symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', join(local, 'bin', 'npx'))
  // The global npmrc ($PREFIX/etc/npmrc): read by npm only, not by the daemon.
  const npmrc = [`registry=${registry.trim()}`]
  if (trust) {
    writeFileSync(join(local, 'etc', 'npm-registry-ca.pem'), trust, { mode: 0o644 })
    npmrc.push('cafile=/usr/local/etc/npm-registry-ca.pem')
  }
  writeFileSync(join(local, 'etc', 'npmrc'), `${npmrc.join('\n')}\n`, { mode: 0o644 })

  const tar = join(extra, 'base.tar')
  // Only what debootstrap has not made: an image layer holds each path once.
  const added = [
    'bin/node',
    'bin/npm',
    'bin/npx',
    'lib/node_modules',
    ...readdirSync(join(local, 'etc')).map((f) => `etc/${f}`),
  ]
  const members = added.map((path) => `usr/local/${path}`)
  await ok('tar', ['-cf', tar, '-C', rootfs, '.', '-C', extra, ...members], { timeoutMs: 300_000 })
  await podman.ok(
    [
      'import',
      '--change',
      'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      '--change',
      `ENV NODE_VERSION=${nodeVersion.slice(1)}`,
      '--change',
      `LABEL ${label}=${key}`,
      '--change',
      'CMD ["node"]',
      tar,
      name,
    ],
    { timeoutMs: 300_000 },
  )
  const npmInBase = await podman.ok(['run', '--rm', '--network', 'none', name, 'npm', '--version'])
  assert.equal(npmInBase.trim(), npmSource, 'the stand-in runs npm')
  t.diagnostic(`stand-in ${name} (${key}) made in ${Math.round((Date.now() - started) / 1000)} s`)
}

/** Working containers an interrupted `podman build` left behind (the store is ours alone). */
async function removeLeftovers(podman: Podman): Promise<void> {
  const ids = (await podman.ok(['ps', '--all', '--external', '--quiet', '--no-trunc']))
    .split('\n')
    .filter(Boolean)
  if (ids.length > 0) await podman.run(['rm', '--force', ...ids])
}

/** A Deployment as a user would feed `inject`. */
const appYaml = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  selector:
    matchLabels:
      app: app
  template:
    metadata:
      labels:
        app: app
    spec:
      containers:
        - name: app
          image: registry.example/app:1.0.0
`

test(
  'the Dockerfile builds with podman and its image runs read-only as uid 65532 with no capabilities',
  { timeout: 1_800_000, skip: skipReason() },
  async (t) => {
    mkdirSync(cacheRoot, { recursive: true, mode: 0o755 })
    await lock(t, join(cacheRoot, 'lock'))
    const podman = privatePodman(cacheRoot)
    await removeLeftovers(podman)
    await standInBase(t, podman, baseImage())

    const started = Date.now()
    const build = await podman.run(['build', '--tag', image, '.'], { cwd: repo, timeoutMs: 1_200_000 })
    await removeLeftovers(podman)
    assert.equal(
      build.code,
      0,
      `podman build: exit ${build.code}\n${build.stderr.slice(-4000)}${build.stdout.slice(-4000)}`,
    )
    t.diagnostic(`podman build: ${Math.round((Date.now() - started) / 1000)} s`)
    // The stages' layers are the cache of the next run; what no run has made for three days goes.
    await podman.run(['image', 'prune', '--force', '--filter', 'until=72h'])

    await t.test('the image: numeric user, exec-form entry point of the bin, no HEALTHCHECK', async () => {
      const [inspected] = JSON.parse(await podman.ok(['image', 'inspect', image])) as {
        Config: { User?: string; Entrypoint?: string[]; Cmd?: string[]; Healthcheck?: unknown }
      }[]
      assert.equal(inspected!.Config.User, `${uid}:${uid}`)
      assert.deepEqual(inspected!.Config.Entrypoint, [
        'node',
        '--max-semi-space-size=1',
        '--max-old-space-size=128',
        '/app/node_modules/credential-sidecar/bin/credential-sidecar.js',
      ])
      assert.equal(inspected!.Config.Healthcheck, undefined)
    })

    await t.test(
      'the image holds the production install only: no sources, no dev dependencies',
      async (t) => {
        const root = (await podman.ok(['image', 'mount', image])).trim()
        t.after(() => podman.run(['image', 'unmount', image]))
        const modules = join(root, 'app', 'node_modules')
        assert.ok(existsSync(join(modules, 'credential-sidecar', 'dist', 'main.js')))
        assert.ok(existsSync(join(modules, 'credential-sidecar', 'dist', 'bundle', 'main.js')), 'the bundle')
        assert.ok(!existsSync(join(modules, 'credential-sidecar', 'src')), 'no TypeScript sources')
        // The compile cache the build filled for the runtime uid (Node names its directory
        // <version>-<arch>-<flags hash>-<uid>).
        const caches = readdirSync(join(root, 'app', 'compile-cache'))
        const ours = caches.find(
          (name) => name.startsWith(`v${process.versions.node.split('.')[0]}`) && name.endsWith(`-${uid}`),
        )
        assert.ok(ours, `a compile cache for uid ${uid}: ${caches.join(', ')}`)
        assert.ok(
          readdirSync(join(root, 'app', 'compile-cache', ours)).length > 3,
          'the cache holds the bundle',
        )
        assert.ok(
          !existsSync(join(root, 'warm-compile-cache.mjs')),
          'the warm-up script stays in the install stage',
        )
        for (const devOnly of ['typescript', 'prettier', 'node', '@azure/identity', '@types/node']) {
          assert.ok(!existsSync(join(modules, devOnly)), `${devOnly} is a dev dependency: not in the image`)
        }
        for (const buildOnly of ['src', 'pack', 'root/.npm']) {
          assert.ok(!existsSync(join(root, buildOnly)), `/${buildOnly} stays in the build stages`)
        }
      },
    )

    await t.test('IMAGE --version prints the package version', async () => {
      const out = await podman.ok(['run', '--rm', '--network', 'none', ...hardened, image, '--version'])
      assert.equal(out.trim(), version)
    })

    await t.test(
      'check-config, then the daemon serves Bearer and mTLS PoP tokens from the emulator, and SIGTERM ends it with 0',
      async (t) => {
        const emulator = await startEmulator()
        t.after(() => emulator.close())
        const etc = mkdtempSync(join(tmpdir(), 'credential-sidecar-image-etc-'))
        t.after(() => rmSync(etc, { recursive: true, force: true }))
        chmodSync(etc, 0o755)
        writeFileSync(join(etc, 'ca.pem'), emulator.caPem, { mode: 0o644 })
        // callers.allow for this test's uid: the daemon in the image (uid 65532, no capability,
        // read-only root) must read each caller's uid with the kernel's socket diagnostics, through
        // the koffi the production install brought, not fall back to the /proc scan.
        const config =
          emulatorConfigYaml(emulator, '/etc/credential-sidecar/ca.pem') +
          `callers:\n  allow:\n    - uid: ${process.getuid!()}\n      identities: [mi, mi-pop]\n`
        writeFileSync(join(etc, 'config.yaml'), config, { mode: 0o644 })

        const mount = ['--volume', `${etc}:/etc/credential-sidecar:ro`]
        const checked = await podman.ok([
          'run',
          '--rm',
          '--network',
          'none',
          ...hardened,
          ...mount,
          image,
          'check-config',
          '/etc/credential-sidecar/config.yaml',
        ])
        assert.match(checked, /mi-pop/)

        // The emulator listens on the host's loopback; the daemon shares it (--network host) and
        // listens there too on the port it logs.
        const name = `credential-sidecar-image-test-${process.pid}`
        t.after(() => podman.run(['rm', '--force', '--ignore', name]))
        const entry = ['podman', 'run', '--rm', '--name', name, '--network', 'host', ...hardened]
        entry.push(...mount, image)
        const daemon = startProcess(
          t,
          ['--config', '/etc/credential-sidecar/config.yaml'],
          {
            CONTAINERS_CONF: podman.env.CONTAINERS_CONF,
            CONTAINERS_STORAGE_CONF: podman.env.CONTAINERS_STORAGE_CONF,
          },
          undefined,
          {
            entry,
          },
        )
        const { url } = (await daemon.waitFor('listening', 60_000)) as { url: string }
        await daemon.waitFor('ready', 60_000)
        await assertServesBearerAndPop(url)
        const lookup = await daemon.waitFor(
          'callers.allow: caller uids read with the kernel socket diagnostics',
          10_000,
        )
        assert.equal(lookup['lookup'], 'sock-diag')

        // What the kernel says of the process in the container.
        const pid = (await podman.ok(['inspect', '--format', '{{.State.Pid}}', name])).trim()
        const status = readFileSync(`/proc/${pid}/status`, 'utf8')
        assert.match(status, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'))
        assert.match(status, /^CapEff:\s+0+$/m, 'no effective capability')
        assert.match(status, /^CapBnd:\s+0+$/m, 'no capability to gain either')
        const mounts = readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
          .split('\n')
          .map((l) => l.split(' '))
        const rootMount = mounts.find((fields) => fields[4] === '/')
        assert.match(rootMount?.[5] ?? '', /^ro\b/, 'the root filesystem is read-only')
        for (const dir of ['/tmp', '/var/tmp', '/run']) {
          assert.ok(!mounts.some((fields) => fields[4] === dir), `no writable tmpfs on ${dir}`)
        }

        await podman.ok(['kill', '--signal', 'TERM', name])
        assert.deepEqual(await daemon.exit, { code: 0, signal: null }, daemon.stderr.join(''))
      },
    )

    await t.test('inject - through the image writes what the checkout writes', async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'credential-sidecar-image-inject-'))
      t.after(() => rmSync(dir, { recursive: true, force: true }))
      const input = join(dir, 'app.yaml')
      writeFileSync(input, appYaml)
      const args = ['inject', '-', '--image', 'registry.example/credential-sidecar:0.1.0']
      const inImage = await podman.run(
        ['run', '--rm', '-i', '--network', 'none', ...hardened, image, ...args],
        {
          input,
        },
      )
      assert.equal(inImage.code, 0, inImage.stderr)
      const fromCheckout = await exec(
        process.execPath,
        [join(repo, 'sidecar', 'bin', 'credential-sidecar.js'), ...args],
        {
          input,
          timeoutMs: 60_000,
        },
      )
      assert.equal(fromCheckout.code, 0, fromCheckout.stderr)
      assert.equal(inImage.stdout, fromCheckout.stdout)
      const [deployment] = parseAllDocuments(inImage.stdout).map((d) => d.toJS() as any)
      const sidecar = deployment.spec.template.spec.initContainers[0]
      assert.equal(sidecar.image, 'registry.example/credential-sidecar:0.1.0')
      assert.equal(sidecar.restartPolicy, 'Always')
    })

    await t.test('webhook --help runs from the image (where the CLI has the command)', async (t) => {
      const help = await podman.ok(['run', '--rm', '--network', 'none', ...hardened, image, '--help'])
      if (!/^\s+webhook\b/m.test(help)) {
        t.diagnostic('this CLI has no webhook command yet')
        return
      }
      const webhook = await podman.ok([
        'run',
        '--rm',
        '--network',
        'none',
        ...hardened,
        image,
        'webhook',
        '--help',
      ])
      assert.match(webhook, /^Usage: credential-sidecar webhook/m)
    })
  },
)
