import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const src = fileURLToPath(new URL('../../sidecar/src', import.meta.url))

/**
 * Contract §3: no timer may depend on a delay above what `setTimeout` holds (2^31-1 ms). In the
 * layers that turn lifetimes into delays (credentials, cache, tokens, identities, model, upstream), a timer
 * goes through `core/long-timer.ts`; the few direct timers left there wait a bounded delay, each
 * listed here with its bound.
 */
const bounded = new Map([
  ['upstream/retry.ts', 'retry back-off: at most 60 s (maxRetryAfterMs) or the policy’s 10 s'],
])
const layers = ['credentials', 'cache', 'tokens', 'identities', 'model', 'upstream']

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return sources(path)
    return entry.name.endsWith('.ts') ? [relative(src, path)] : []
  })
}

test('lifetime-driven layers wait through the long-delay timer, never a bare setTimeout', () => {
  const offenders: string[] = []
  for (const layer of layers) {
    for (const file of sources(join(src, layer))) {
      if (bounded.has(file)) continue
      const text = readFileSync(join(src, file), 'utf8')
      for (const [index, line] of text.split('\n').entries()) {
        if (/\bsetTimeout\(|\.setTimer\(|\.sleep\(/.test(line) && !/^\s*(\*|\/\/)/.test(line))
          offenders.push(`${file}:${index + 1}: ${line.trim()}`)
      }
    }
  }
  assert.deepEqual(offenders, [], 'use setLongTimer / sleepLong (core/long-timer.ts)')
})
