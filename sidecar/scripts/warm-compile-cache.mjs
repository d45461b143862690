/**
 * Fills Node's module compile cache (https://nodejs.org/api/module.html#module-compile-cache) for
 * the daemon: starts the bin once with NODE_COMPILE_CACHE=DIR, waits for `{"msg":"ready"}`, stops it
 * with SIGTERM; Node writes V8's code for every module the start-up compiled into DIR on exit.
 *
 *   node scripts/warm-compile-cache.mjs BIN DIR [NODE_OPTION...]
 *
 * The image runs this at build time as its runtime uid (Node keeps one cache per Node version, CPU
 * and uid, under DIR) with the ENTRYPOINT's Node options; at run time DIR is only read, so a
 * read-only root filesystem is fine, and another uid just starts without the cache. Saves ~30 ms
 * of CPU per start on the 2-core bench machine (bench/startup.ts).
 */
import { spawn } from 'node:child_process'

const [bin, dir, ...nodeOptions] = process.argv.slice(2)
if (!bin || !dir) {
  process.stderr.write('usage: warm-compile-cache.mjs BIN DIR [NODE_OPTION...]\n')
  process.exit(2)
}
const child = spawn(process.execPath, [...nodeOptions, bin], {
  // The environment-configured daemon (system-assigned managed identity, nothing warm) on a free
  // loopback port: it starts without any upstream.
  env: { ...process.env, NODE_COMPILE_CACHE: dir, CREDENTIAL_SIDECAR_LISTEN: '127.0.0.1:0' },
  stdio: ['ignore', 'pipe', 'inherit'],
})
const deadline = setTimeout(() => {
  process.stderr.write('warm-compile-cache: the daemon was not ready within 60 s\n')
  child.kill('SIGKILL')
}, 60_000)
/** @type {string | undefined} */
let seen = ''
child.stdout.on('data', (chunk) => {
  if (seen === undefined) return
  seen += String(chunk)
  // One SIGTERM: a second one would make the daemon exit 1 at once, before Node writes the cache.
  if (seen.includes('"msg":"ready"')) {
    seen = undefined
    child.kill('SIGTERM')
  }
})
child.on('exit', (code, signal) => {
  clearTimeout(deadline)
  if (code !== 0) process.stderr.write(`warm-compile-cache: the daemon exited with ${code ?? signal}\n`)
  process.exit(code === 0 ? 0 : 1)
})
