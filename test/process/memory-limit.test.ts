/**
 * The daemon as the image runs it (the esbuild bundle, the ENTRYPOINT's V8 flags) stays under the
 * memory limit `inject` gives the sidecar container, with margin, through connection churn and
 * through many more scopes than its cache holds (issue 21). A bounded version of bench/churn.ts and
 * bench/scopes.ts: fewer connections and scopes, the same assertions on RSS.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startEmulator } from '../support/emulator.ts'
import { assertServesBearerAndPop, emulatorConfigYaml } from '../support/installed.ts'
import { startProcess } from './process.ts'

const repo = join(import.meta.dirname, '..', '..')
const sidecar = join(repo, 'sidecar')

/** The Node options between `node` and the bin in the Dockerfile's ENTRYPOINT. */
function imageNodeOptions(): string[] {
  const entrypoint = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(readFileSync(join(repo, 'Dockerfile'), 'utf8'))
  assert.ok(entrypoint, 'the Dockerfile has an exec-form ENTRYPOINT')
  const argv = JSON.parse(entrypoint[1] as string) as string[]
  return argv.slice(
    1,
    argv.findIndex((arg) => arg.endsWith('credential-sidecar.js')),
  )
}

/** The memory limit `inject` writes for the sidecar container, in bytes. */
function injectMemoryLimitBytes(): number {
  const source = readFileSync(join(sidecar, 'src', 'cli', 'inject', 'sidecar-container.ts'), 'utf8')
  const mi = /limits:\s*\{[^}]*memory:\s*'(\d+)Mi'/.exec(source)?.[1]
  assert.ok(mi, 'inject sets a memory limit in Mi')
  return Number(mi) * 1024 * 1024
}

function rssBytes(pid: number): number {
  const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
  return Number(kb) * 1024
}

/** `total` requests for `path`, each on a new connection, `concurrency` at a time; the statuses seen. */
async function churn(
  port: number,
  path: string,
  total: number,
  concurrency: number,
): Promise<Map<number, number>> {
  const request = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nMetadata: true\r\n\r\n`)
  const statuses = new Map<number, number>()
  let started = 0
  const once = () =>
    new Promise<void>((resolve, reject) => {
      const socket = connect({ port, host: '127.0.0.1' })
      let head = ''
      socket.on('connect', () => socket.write(request))
      socket.on('data', (chunk: Buffer) => {
        head += chunk.toString('latin1')
        const end = head.indexOf('\r\n\r\n')
        const length = /\r\ncontent-length: (\d+)/i.exec(head)?.[1]
        if (end < 0 || length === undefined || head.length < end + 4 + Number(length)) return
        const status = Number(head.slice(9, 12))
        statuses.set(status, (statuses.get(status) ?? 0) + 1)
        socket.destroy()
        resolve()
      })
      socket.on('error', reject)
    })
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (started < total) {
        started++
        await once()
      }
    }),
  )
  return statuses
}

test(
  'the bundled daemon with the image flags stays under the inject memory limit through churn and many scopes',
  { timeout: 120_000 },
  async (t) => {
    const limit = injectMemoryLimitBytes()
    // The package as installed: bin/ and dist/bundle/ (built now), package.json; node-forge and the
    // other external modules from the repository's node_modules.
    const pkg = mkdtempSync(join(tmpdir(), 'credential-sidecar-bundle-'))
    t.after(() => rmSync(pkg, { recursive: true, force: true }))
    execFileSync(process.execPath, [join(sidecar, 'scripts', 'bundle.mjs'), join(pkg, 'dist', 'bundle')])
    mkdirSync(join(pkg, 'bin'))
    copyFileSync(join(sidecar, 'bin', 'credential-sidecar.js'), join(pkg, 'bin', 'credential-sidecar.js'))
    copyFileSync(join(sidecar, 'package.json'), join(pkg, 'package.json'))
    symlinkSync(join(repo, 'node_modules'), join(pkg, 'node_modules'))

    const emulator = await startEmulator()
    t.after(() => emulator.close())
    const caFile = join(pkg, 'ca.pem')
    writeFileSync(caFile, emulator.caPem)
    const config = join(pkg, 'config.yaml')
    writeFileSync(config, `cache:\n  maxTokens: 1000\n${emulatorConfigYaml(emulator, caFile)}`)

    const daemon = startProcess(t, ['--config', config], {}, '', {
      entry: [process.execPath, ...imageNodeOptions(), join(pkg, 'bin', 'credential-sidecar.js')],
    })
    const { url } = (await daemon.waitFor('listening')) as { url: string }
    await daemon.waitFor('ready')
    // The bundle serves Bearer and, with node-forge loaded from node_modules for its CSR, mtls_pop.
    await assertServesBearerAndPop(url)
    const pid = daemon.child.pid as number
    const port = Number(new URL(url).port)
    let peak = rssBytes(pid)
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 50)
    t.after(() => clearInterval(sampler))

    const hits = await churn(port, '/token?resource=https://management.azure.com', 10_000, 32)
    assert.deepEqual([...hits], [[200, 10_000]])
    const afterChurn = peak

    // 3,000 scopes through a 1,000-token cache: every one an upstream call, the cache evicting.
    let next = 0
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < 3_000) {
          const res = await fetch(`${url}/token?resource=https://r${next++}.example.com`, {
            headers: { Metadata: 'true' },
          })
          assert.equal(res.status, 200)
          await res.arrayBuffer()
        }
      }),
    )
    const metrics = await (await fetch(`${url}/metrics`)).text()
    const series = metrics
      .split('\n')
      .filter((l) => l.startsWith('credential_sidecar_token_expiry_timestamp_seconds{'))
    assert.ok(series.length <= 1000, `${series.length} token series, bounded by cache.maxTokens`)
    clearInterval(sampler)
    peak = Math.max(peak, rssBytes(pid))
    const mb = (bytes: number) => (bytes / 1048576).toFixed(1)
    t.diagnostic(
      `RSS peak ${mb(afterChurn)} MB after churn, ${mb(peak)} MB after the scopes; limit ${mb(limit)} MB`,
    )
    // Margin: a quarter of the limit stays free (the bench's 200,000 connections peak near 55 %).
    assert.ok(peak < 0.75 * limit, `RSS peak ${mb(peak)} MB is under 75 % of the ${mb(limit)} MB limit`)
    daemon.child.kill('SIGTERM')
    assert.deepEqual(await daemon.exit, { code: 0, signal: null })
  },
)
