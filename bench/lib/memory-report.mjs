/**
 * Plain JavaScript so that preloading it adds no type stripping to either process.
 * Preloaded (`--expose-gc --import`) into the daemon and the baseline alike: on SIGUSR2, collect
 * garbage and append `{rss, heapUsed}` (bytes) to the file named by BENCH_MEMORY_FILE.
 */
import { appendFileSync } from 'node:fs'

const file = process.env['BENCH_MEMORY_FILE']
if (file) {
  process.on('SIGUSR2', () => {
    globalThis.gc?.()
    const { rss, heapUsed } = process.memoryUsage()
    appendFileSync(file, `${JSON.stringify({ rss, heapUsed })}\n`)
  })
}
