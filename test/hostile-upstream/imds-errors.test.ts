import { test } from 'node:test'
import assert from 'node:assert/strict'
import { hostileDaemon, hostileServer, imdsV1Yaml, sendJson, tokenPath } from './support.ts'

/** Contract §3 "Upstream failures map to…", driven against a fake IMDS v1. */

const imdsPath = '/metadata/identity/oauth2/token'
const compatPath = `${imdsPath}?api-version=2018-02-01&resource=${encodeURIComponent('https://management.azure.com')}`

test('IMDS AADSTS error_codes, trace_id and correlation_id are passed through on /token and the IMDS route', async (t) => {
  const imds = await hostileServer(t, (_req, res) =>
    sendJson(res, 400, {
      error: 'invalid_resource',
      error_description: 'AADSTS500011: The resource principal named https://x was not found.',
      error_codes: [500011],
      timestamp: '2026-12-06 05:00:00Z',
      trace_id: 'tr-1',
      correlation_id: 'co-1',
    }),
  )
  const daemon = await hostileDaemon(t, imdsV1Yaml(imds.url))
  for (const path of [tokenPath, compatPath]) {
    const res = await daemon.get(path)
    assert.equal(res.status, 400, JSON.stringify(res.body))
    assert.equal(res.body.error, 'invalid_resource')
    assert.deepEqual(res.body.error_codes, [500011])
    assert.equal(res.body.trace_id, 'tr-1')
    assert.equal(res.body.correlation_id, 'co-1')
    assert.match(res.body.error_description, /AADSTS500011/)
  }
})

test("IMDS's other error shape {message, correlationId} keeps its correlation id", async (t) => {
  const imds = await hostileServer(t, (_req, res) =>
    sendJson(res, 400, { message: 'Identity not found', correlationId: 'co-2' }),
  )
  const daemon = await hostileDaemon(t, imdsV1Yaml(imds.url))
  const res = await daemon.get(tokenPath)
  assert.equal(res.status, 400, JSON.stringify(res.body))
  assert.equal(res.body.correlation_id, 'co-2')
  assert.match(res.body.error_description, /Identity not found/)
})

test('an IMDS 400 invalid_client is a refusal: 502 upstream_error on /token, 400 with the same body on the IMDS route', async (t) => {
  const imds = await hostileServer(t, (_req, res) =>
    sendJson(res, 400, {
      error: 'invalid_client',
      error_description: "AADSTS700016: Application with identifier 'x' was not found in the directory.",
      error_codes: [700016],
      trace_id: 'tr-3',
      correlation_id: 'co-3',
    }),
  )
  const daemon = await hostileDaemon(t, imdsV1Yaml(imds.url))
  const native = await daemon.get(tokenPath)
  assert.equal(native.status, 502, JSON.stringify(native.body))
  assert.equal(native.body.error, 'upstream_error')
  assert.deepEqual(native.body.error_codes, [700016])
  assert.equal(native.body.trace_id, 'tr-3')
  const compat = await daemon.get(compatPath)
  assert.equal(compat.status, 400, JSON.stringify(compat.body))
  assert.equal(compat.body.error, 'upstream_error')
  assert.deepEqual(compat.body.error_codes, [700016])
})

test('resource=<uri>/.default is refused with 400 on /token and the IMDS route, before any upstream call', async (t) => {
  const imds = await hostileServer(t, (_req, res) => sendJson(res, 500, {}))
  const daemon = await hostileDaemon(t, imdsV1Yaml(imds.url))
  const given = encodeURIComponent('https://x/.default')
  for (const path of [`/token?resource=${given}`, `${imdsPath}?api-version=2018-02-01&resource=${given}`]) {
    const res = await daemon.get(path)
    assert.equal(res.status, 400, JSON.stringify(res.body))
    assert.equal(res.body.error, 'invalid_request')
    assert.match(res.body.error_description, /scope=/)
  }
  const scopeless = await daemon.get(`/token?scope=${encodeURIComponent('https://x')}`)
  assert.equal(scopeless.status, 400)
  assert.match(scopeless.body.error_description, /\/\.default/)
  assert.equal(imds.seen.count(imdsPath), 0)
})

async function retryAfterOf(t: import('node:test').TestContext, status: number, retryAfter: string) {
  const imds = await hostileServer(t, (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json', 'retry-after': retryAfter })
    res.end(JSON.stringify({ error: 'throttled', error_description: 'slow down' }))
  })
  const daemon = await hostileDaemon(t, imdsV1Yaml(imds.url, '  timeoutMs: 800\n  requestDeadlineMs: 1500\n'))
  const res = await fetch(`${daemon.url}${tokenPath}`, { headers: { Metadata: 'true' } })
  const body = (await res.json()) as Record<string, unknown>
  assert.equal(res.status, 503, JSON.stringify(body))
  assert.equal(body['error'], 'upstream_unavailable')
  return Number(res.headers.get('retry-after'))
}

test("the deadline's 503 carries upstream's Retry-After (429: 7 s, 503: 9 s), not our own 5 s", async (t) => {
  assert.equal(await retryAfterOf(t, 429, '7'), 7)
  assert.equal(await retryAfterOf(t, 503, '9'), 9)
})

test("retries given up (upstream asks for more than 60 s) answer at once with upstream's Retry-After, bounded to 300 s", async (t) => {
  const started = Date.now()
  assert.equal(await retryAfterOf(t, 503, '120'), 120)
  assert.equal(await retryAfterOf(t, 429, '99999999'), 300)
  const inTwoMinutes = new Date(Date.now() + 120_000).toUTCString()
  const fromDate = await retryAfterOf(t, 503, inTwoMinutes)
  assert.ok(fromDate >= 118 && fromDate <= 121, String(fromDate))
  assert.ok(Date.now() - started < 1400, 'no retries were waited for')
})

test('a Retry-After that is neither seconds nor an HTTP-date is ignored: our own back-off', async (t) => {
  assert.equal(await retryAfterOf(t, 503, '-5'), 5)
})
