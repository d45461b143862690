/**
 * Preload (`--import`) that appends the URL of every module loaded to BENCH_MODULES_FILE, for the
 * footprint bench's module count. Plain JavaScript: it adds no type stripping.
 */
import { appendFileSync } from 'node:fs'
import { registerHooks } from 'node:module'

const file = process.env['BENCH_MODULES_FILE']
if (file) {
  registerHooks({
    load(url, context, nextLoad) {
      appendFileSync(file, `${url}\n`)
      return nextLoad(url, context)
    },
  })
}
