import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { delimiter, join } from 'node:path'
import { tmpdir } from 'node:os'
import { promisify } from 'node:util'
import { waitUntil } from '../support/wait-until.ts'
import { binPath, startProcess } from './process.ts'

const version = (
  JSON.parse(readFileSync(new URL('../../sidecar/package.json', import.meta.url), 'utf8')) as {
    version: string
  }
).version

interface Result {
  code: number
  stdout: string
  stderr: string
  ms: number
}

/** Runs the bin to completion with this Node (24) or `node`. */
async function cli(
  args: string[],
  env: Record<string, string> = {},
  node = process.execPath,
): Promise<Result> {
  const started = performance.now()
  try {
    const { stdout, stderr } = await promisify(execFile)(node, [binPath, ...args], {
      env: { PATH: process.env['PATH'] ?? '', ...env },
      timeout: 60_000,
    })
    return { code: 0, stdout, stderr, ms: performance.now() - started }
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr, ms: performance.now() - started }
  }
}

function tempDir(t: import('node:test').TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-cli-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

test('--help and -h print the usage, also per command; exit 0', async () => {
  for (const args of [['--help'], ['-h'], ['help']]) {
    const { code, stdout, stderr } = await cli(args)
    assert.equal(code, 0, args.join(' '))
    assert.match(stdout, /^Usage: credential-sidecar \[COMMAND\] \[OPTIONS\]/)
    assert.match(stdout, /check-config \[FILE\]/)
    assert.equal(stderr, '')
  }
  for (const [command, first] of [
    ['check-config', 'Usage: credential-sidecar check-config [FILE]'],
    ['doctor', 'Usage: credential-sidecar doctor [--config FILE] [--json]'],
    ['demo', 'Usage: credential-sidecar demo [--port N]'],
  ] as const) {
    for (const args of [
      [command, '--help'],
      [command, '-h'],
      ['help', command],
    ]) {
      const { code, stdout } = await cli(args)
      assert.equal(code, 0, args.join(' '))
      assert.ok(stdout.startsWith(first), `${args.join(' ')}: ${stdout}`)
    }
  }
})

test('--version and -V print the package version; exit 0', async () => {
  for (const args of [['--version'], ['-V'], ['doctor', '-V']]) {
    const { code, stdout } = await cli(args)
    assert.equal(code, 0)
    assert.equal(stdout, `${version}\n`)
  }
})

test('usage errors exit 2 with one line on stderr that points at --help', async () => {
  for (const [args, message] of [
    [['bogus'], /unknown command "bogus"/],
    [['--bogus'], /unknown option '--bogus'/],
    [['doctor', '--bogus'], /unknown option '--bogus'/],
    [['check-config', 'a.yaml', 'b.yaml'], /at most one FILE/],
    [['demo', '--port', 'eighty'], /--port expects a port number/],
    [['--config'], /option '-c, --config <value>' argument missing/],
    [['help', 'nope'], /unknown command "nope"/],
  ] as const) {
    const { code, stdout, stderr } = await cli([...args])
    assert.equal(code, 2, args.join(' '))
    assert.equal(stdout, '')
    assert.equal(stderr.split('\n').filter(Boolean).length, 1, stderr)
    assert.match(stderr, /^credential-sidecar: .* \(see credential-sidecar --help\)\n$/)
    assert.match(stderr, message)
  }
})

test('failures exit 1: a bad config, a missing file, a daemon that cannot start', async (t) => {
  const dir = tempDir(t)
  const bad = join(dir, 'bad.yaml')
  writeFileSync(bad, 'listen:\n  prot: 1\n')
  for (const args of [
    ['check-config', bad],
    ['--config', bad],
    ['check-config', join(dir, 'missing.yaml')],
  ]) {
    const { code, stderr } = await cli(args)
    assert.equal(code, 1, args.join(' '))
    assert.doesNotMatch(stderr, /^\s+at /m, 'no stack trace')
  }
  assert.match((await cli(['check-config', bad])).stderr, /bad\.yaml:2:3 listen\.prot: unknown key/)
  // Port taken: the daemon cannot start.
  const blocker = createServer().listen(0, '127.0.0.1')
  t.after(() => blocker.close())
  await new Promise((resolve) => blocker.once('listening', resolve))
  const port = (blocker.address() as { port: number }).port
  const { code, stdout, stderr } = await cli([], { CREDENTIAL_SIDECAR_LISTEN: `127.0.0.1:${port}` })
  assert.equal(code, 1)
  assert.match(stdout, /"msg":"failed to start"/)
  // The reason also goes to stderr, one line, like a config error.
  assert.match(stderr, /^credential-sidecar: failed to start: .*EADDRINUSE.*\n$/)
  // A caller secret file that is missing at start names its key.
  const missing = await cli([], {
    CREDENTIAL_SIDECAR_LISTEN: '127.0.0.1:0',
    CREDENTIAL_SIDECAR_SECRET_FILE: join(dir, 'no-such-secret'),
  })
  assert.equal(missing.code, 1)
  assert.match(missing.stdout, /"error":"callers\.secretFile: cannot read [^"]*no-such-secret \(ENOENT/)
  assert.match(
    missing.stderr,
    /^credential-sidecar: failed to start: callers\.secretFile: cannot read .*no-such-secret \(ENOENT/,
  )
})

test('check-config without a file prints what the environment resolves to', async () => {
  const { code, stdout } = await cli(['check-config'], {
    AZURE_CLIENT_ID: '11111111-1111-1111-1111-111111111111',
    CREDENTIAL_SIDECAR_LISTEN: '127.0.0.1:7790',
  })
  assert.equal(code, 0)
  assert.match(stdout, /^config: \(none: from the environment/m)
  assert.match(stdout, /^listen: http:\/\/127\.0\.0\.1:7790/m)
  assert.match(stdout, /user-assigned, clientId 11111111-1111-1111-1111-111111111111/)
})

/** A Node.js older than 24: PATH's own node (the machine's), else the registry's node@22. */
async function oldNode(): Promise<string> {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    const candidate = join(dir, 'node')
    if (dir.includes('node_modules') || !existsSync(candidate)) continue
    const { stdout } = await promisify(execFile)(candidate, ['--version'])
    if (Number(stdout.trim().slice(1).split('.')[0]) < 24) return candidate
  }
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)))
  const { stdout } = await promisify(execFile)(
    'npm',
    ['exec', '--yes', '--package=node@22', '--', 'node', '-p', 'process.execPath'],
    { env, cwd: tmpdir() },
  )
  return stdout.trim()
}

test('on an older Node.js the bin prints one line naming both versions and exits 1', async () => {
  const node = await oldNode()
  const found = (await promisify(execFile)(node, ['-p', 'process.versions.node'])).stdout.trim()
  assert.ok(Number(found.split('.')[0]) < 24)
  for (const args of [[], ['--help'], ['doctor']]) {
    const { code, stdout, stderr } = await cli(args, {}, node)
    assert.equal(code, 1)
    assert.equal(stdout, '')
    assert.equal(
      stderr,
      `credential-sidecar: requires Node.js 24 or later; this is Node.js ${found} (${node})\n`,
    )
  }
})

test('doctor off Azure: IMDS silent, answers within about 5 s with a hint; --json', async (t) => {
  // Accepts connections and never answers, as a dropped 169.254.169.254 looks from a client.
  const sockets = new Set<Socket>()
  const silent = createServer((socket) => sockets.add(socket)).listen(0, '127.0.0.1')
  t.after(() => {
    for (const socket of sockets) socket.destroy()
    silent.close()
  })
  await new Promise((resolve) => silent.once('listening', resolve))
  const env = {
    AZURE_POD_IDENTITY_AUTHORITY_HOST: `http://127.0.0.1:${(silent.address() as { port: number }).port}`,
  }
  const text = await cli(['doctor'], env)
  assert.equal(text.code, 1)
  // The check itself, as doctor reports it; the wall clock adds the process start, seconds on a
  // loaded CI machine.
  const checked = Number(/checked in ([\d.]+) s\)\n$/.exec(text.stdout)?.[1])
  assert.ok(checked < 5, `doctor checked for ${checked} s`)
  // No hang after the check (a socket left open would keep the process alive until execFile's
  // 60 s timeout); generous, as starting the process alone takes 3–5 s under load.
  assert.ok(text.ms < 30_000, `doctor took ${Math.round(text.ms)} ms`)
  assert.match(text.stdout, /not reachable: no answer within 1500 ms/)
  assert.match(
    text.stdout,
    /mi \(managed identity, Bearer, IMDS v1\)\n {2}FAIL {2}IMDS is not reachable\n {2}hint {2}.*not on Azure\? set upstream\.imdsEndpoint .*credential-sidecar demo/,
  )
  assert.doesNotMatch(text.stdout, /still trying in the background/)

  const json = await cli(['doctor', '--json'], env)
  assert.equal(json.code, 1)
  const report = JSON.parse(json.stdout) as Record<string, any>
  assert.ok(report['ms'] < 5000, `doctor --json checked for ${report['ms']} ms`)
  assert.equal(report['ok'], false)
  assert.equal(report['imds']['reachable'], false)
  assert.equal(report['identities'][0]['name'], 'mi')
  assert.match(report['identities'][0]['hint'], /not on Azure\?/)

  // Nothing listening at all: connection refused, also at once.
  const refused = await cli(['doctor'], { AZURE_POD_IDENTITY_AUTHORITY_HOST: 'http://127.0.0.1:1' })
  assert.equal(refused.code, 1)
  assert.match(refused.stdout, /not reachable: ECONNREFUSED/)
})

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`demo removes its temporary directory (it holds a private key) on ${signal}`, async (t) => {
    const proc = startProcess(t, ['demo', '--port', '0'])
    // The demo starts an emulator and a daemon first: seconds on a loaded machine.
    const dir = await waitUntil(
      () => /config\s+(\S+)\/config\.yaml/.exec(proc.stdout.join('\n'))?.[1],
      `demo printed its config path; stdout: ${proc.stdout.join('\n')}`,
    )
    assert.ok(existsSync(join(dir, 'config.yaml')))
    assert.ok(existsSync(join(dir, 'emulator-ca.pem')))
    proc.child.kill(signal)
    assert.deepEqual(await proc.exit, { code: 0, signal: null })
    assert.equal(existsSync(dir), false, `${dir} was removed`)
  })
}
