import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Agent, request } from 'undici'
import { Metrics } from '../../sidecar/src/core/metrics.ts'
import { startStack } from '../support/stack.ts'

const series = /^credential_sidecar_token_expiry_timestamp_seconds\{identity="mi",scope="([^"]+)"\} \d+$/gm

/** The token-expiry series a scrape publishes, by scope. */
async function expirySeries(url: string): Promise<string[]> {
  const text = await (await fetch(`${url}/metrics`)).text()
  return [...text.matchAll(series)].map((m) => m[1] as string)
}

test('token expiry series are tied to cache entries: bounded by cache.maxTokens, gone with the entry', async (t) => {
  const maxTokens = 20
  const stack = await startStack(t, {
    configYaml: () => `cache:\n  maxTokens: ${maxTokens}\nidentities:\n  mi:\n    managedIdentity: {}\n`,
  })
  const dispatcher = new Agent({ connections: 8 })
  t.after(() => dispatcher.close())
  const scopes = Array.from({ length: 120 }, (_, i) => `https://r${i}.example.com`)
  let next = 0
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < scopes.length) {
        const resource = scopes[next++] as string
        const res = await request(`${stack.url}/token?resource=${encodeURIComponent(resource)}`, {
          headers: { Metadata: 'true' },
          dispatcher,
        })
        assert.equal(res.statusCode, 200)
        await res.body.dump()
      }
    }),
  )
  const published = await expirySeries(stack.url)
  // Exactly the cached tokens: the 20 most recently fetched scopes, not all 120 ever asked for.
  assert.equal(published.length, maxTokens)
  assert.equal(stack.daemon.runtime.metrics.tokenSeries, maxTokens)
  // (8 requests run at once, so the last ones may finish, and be cached, out of order.)
  const latest = new Set(scopes.slice(-(maxTokens + 8)).map((s) => `${s}/.default`))
  for (const scope of published) assert.ok(latest.has(scope), `${scope} is still cached`)

  // An evicted scope asked for again comes back; the least recently used one leaves with its entry.
  const again = scopes[0] as string
  assert.equal((await stack.get(`/token?resource=${encodeURIComponent(again)}`)).status, 200)
  const after = await expirySeries(stack.url)
  assert.equal(after.length, maxTokens)
  assert.ok(after.includes(`${again}/.default`))
  // Exactly one entry (the least recently used) left to make room, and its series with it.
  assert.equal(published.filter((scope) => !after.includes(scope)).length, 1)
})

test('a token whose fetch fails leaves no series behind', async (t) => {
  const stack = await startStack(t, {
    configYaml: () => 'cache:\n  maxTokens: 5\nidentities:\n  mi:\n    managedIdentity: {}\n',
  })
  assert.equal((await stack.get('/token?resource=https://ok.example.com')).status, 200)
  // The emulator refuses this resource: the cache never holds it, and no series names it.
  stack.emulator.state.faults.script('imds.token', [
    { status: 400, body: { error: 'invalid_resource', error_description: 'AADSTS500011: no such resource' } },
  ])
  const refused = await stack.get('/token?resource=https://refused.example.com')
  assert.equal(refused.status, 400)
  assert.deepEqual(await expirySeries(stack.url), ['https://ok.example.com/.default'])
})

test('a scrape renders one metric per event-loop turn, in prom-client text format', async () => {
  const metrics = new Metrics({ identities: ['mi'] })
  metrics.countRequest('/token', 200, 0.001)
  for (let i = 0; i < 50; i++)
    metrics.observeToken(`key ${i}`, 'mi', `https://r${i}.example.com/.default`, Date.now() + 3600_000)
  // Values change between two scrapes (CPU, event loop), and so do the active resources (a render
  // has an Immediate pending): compare the lines without them.
  const shape = (text: string) =>
    text
      .split('\n')
      .filter((line) => !line.startsWith('nodejs_active_resources{'))
      .map((line) => line.replace(/ [-+\d.e]+$|NaN$/, ''))
  const rendered = await metrics.render()
  // prom-client's text, then the token series (rendered without prom-client).
  const tokens = rendered.indexOf('\n\n# HELP credential_sidecar_token_expiry_timestamp_seconds ')
  assert.ok(tokens > 0)
  assert.deepEqual(shape(`${rendered.slice(0, tokens)}\n`), shape(await metrics.registry.metrics()))
  assert.match(
    rendered.slice(tokens),
    /^\n\n# HELP [^\n]+\n# TYPE credential_sidecar_token_expiry_timestamp_seconds gauge\n/,
  )
  assert.match(rendered, /\} \d+\n$/)
  assert.equal(rendered.split('\n').filter((l) => l.startsWith('credential_sidecar_token_expiry')).length, 50)
  // A second cache entry with the same labels (a binding rotation) publishes one series, the later
  // expiry; label values are escaped as the text format demands.
  const later = Math.floor(Date.now() / 1000) + 7200
  metrics.observeToken('rotated key', 'mi', 'https://r0.example.com/.default', later * 1000)
  metrics.observeToken('odd key', 'mi', 'https://odd.example.com/"x"\\y', later * 1000)
  const again = await metrics.render()
  assert.equal(again.split('\n').filter((l) => l.startsWith('credential_sidecar_token_expiry')).length, 51)
  assert.ok(again.includes(`{identity="mi",scope="https://r0.example.com/.default"} ${later}\n`))
  assert.ok(again.includes(`{identity="mi",scope="https://odd.example.com/\\"x\\"\\\\y"} ${later}\n`))
  // Other work runs between metrics: a task queued before the scrape (and re-queued each turn)
  // runs again and again before it ends. setImmediate, not a timer: a 1 ms timer may fire only once
  // on a fast or a loaded machine, whatever the render does.
  let turns = 0
  let rendering = true
  const tick = (): void => {
    turns++
    if (rendering) setImmediate(tick)
  }
  setImmediate(tick)
  await metrics.render()
  rendering = false
  assert.ok(turns > 1, `${turns} event-loop turns during a render`)
})
