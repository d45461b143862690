/**
 * Fills Node's module compile cache (https://nodejs.org/api/module.html#module-compile-cache) for
 * the daemon: starts the bin once with NODE_COMPILE_CACHE=DIR and a config file, asks it for a token
 * twice (a miss through IMDS, then a cache hit), stops it with SIGTERM; Node writes V8's code for
 * every module the run compiled into DIR on exit.
 *
 *   node scripts/warm-compile-cache.mjs BIN DIR [NODE_OPTION...]
 *
 * V8 caches the functions that had been compiled when the cache is written, and Node writes a
 * module's entry only once (a later start that reads it adds nothing). So the run goes through what
 * a real pod does first, not only the start-up: the YAML config is parsed, and the first token loads
 * and runs the code the start-up leaves for later (undici, the IMDS client, the fast lane). IMDS is a
 * stub on loopback here, so the build needs no network.
 *
 * The image runs this at build time as its runtime uid (Node keeps one cache per Node version, CPU
 * and uid, under DIR) with the ENTRYPOINT's Node options; at run time DIR is only read, so a
 * read-only root filesystem is fine, and another uid just starts without the cache.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const [bin, dir, ...nodeOptions] = process.argv.slice(2)
if (!bin || !dir) {
  process.stderr.write('usage: warm-compile-cache.mjs BIN DIR [NODE_OPTION...]\n')
  process.exit(2)
}

/** IMDS v1's token answer, for any resource. */
const imds = createServer((req, res) => {
  const resource = new URL(req.url ?? '/', 'http://imds').searchParams.get('resource') ?? ''
  const body = JSON.stringify({
    access_token: 'warm-compile-cache',
    expires_in: '3600',
    expires_on: String(Math.floor(Date.now() / 1000) + 3600),
    resource,
    token_type: 'Bearer',
  })
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
})
await new Promise((resolve) => imds.listen(0, '127.0.0.1', () => resolve(undefined)))
const { port: imdsPort } = /** @type {import('node:net').AddressInfo} */ (imds.address())

const scratch = mkdtempSync(join(tmpdir(), 'warm-compile-cache-'))
const config = join(scratch, 'config.yaml')
writeFileSync(
  config,
  [
    'listen:',
    '  host: 127.0.0.1',
    '  port: 0',
    'upstream:',
    `  imdsEndpoint: http://127.0.0.1:${imdsPort}`,
    'identities:',
    '  mi:',
    '    managedIdentity: {}',
    '',
  ].join('\n'),
)

const child = spawn(process.execPath, [...nodeOptions, bin, '--config', config], {
  env: { ...process.env, NODE_COMPILE_CACHE: dir },
  stdio: ['ignore', 'pipe', 'inherit'],
})
const deadline = setTimeout(() => {
  process.stderr.write('warm-compile-cache: the daemon was not ready within 60 s\n')
  child.kill('SIGKILL')
}, 60_000)

/** GET /token from the daemon; resolves with the status. */
function token(url) {
  return new Promise((resolve, reject) => {
    const target = new URL('/token?resource=https%3A%2F%2Fwarm.example', url)
    const req = request(target, { headers: { Metadata: 'true' } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode))
    })
    req.on('error', reject)
    req.end()
  })
}

/** @type {string | undefined} */
let seen = ''
child.stdout.on('data', (chunk) => {
  if (seen === undefined) return
  seen += String(chunk)
  if (!seen.includes('"msg":"ready"')) return
  const url = /"msg":"listening"[^\n]*?"url":"([^"]+)"|"url":"([^"]+)"[^\n]*"msg":"listening"/.exec(seen)
  seen = undefined
  void (async () => {
    try {
      const address = url?.[1] ?? url?.[2]
      if (!address) throw new Error('no listening line with a url')
      for (const attempt of ['miss', 'hit']) {
        const status = await token(address)
        if (status !== 200) throw new Error(`the ${attempt} token request answered ${status}`)
      }
    } catch (error) {
      process.stderr.write(`warm-compile-cache: ${error instanceof Error ? error.message : error}\n`)
      process.exitCode = 1
    }
    // One SIGTERM: a second one would make the daemon exit 1 at once, before Node writes the cache.
    child.kill('SIGTERM')
  })()
})
child.on('exit', (code, signal) => {
  clearTimeout(deadline)
  imds.close()
  rmSync(scratch, { recursive: true, force: true })
  if (code !== 0) process.stderr.write(`warm-compile-cache: the daemon exited with ${code ?? signal}\n`)
  process.exit(code === 0 ? (process.exitCode ?? 0) : 1)
})
