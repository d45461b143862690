import { test } from 'node:test'
import assert from 'node:assert/strict'
import { forwardingHeaders } from '../../sidecar/src/http/callers/caller-guard.ts'
import { startInProcessApp } from '../support/app.ts'
import { json } from '../support/stack.ts'

/** The caller guard in front of the token routes, asked in process (`app.request`, no socket). */

const mgmt = 'https://management.azure.com'
const tokenRoutes = [
  `/token?resource=${mgmt}`,
  '/credential',
  `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${mgmt}`,
]

test('token routes demand Metadata: true (400, worded as IMDS words it); health, readiness and metrics do not', async (t) => {
  const { request, emulator } = await startInProcessApp(t)
  for (const path of tokenRoutes) {
    for (const metadata of [null, 'false', '']) {
      const res = await request(path, { Metadata: metadata })
      assert.equal(res.status, 400, `${path} Metadata: ${metadata}`)
      const body = await json(res)
      assert.equal(body.error, 'invalid_request')
      assert.equal(body.error_description, 'Required metadata header not specified')
    }
  }
  assert.equal(emulator.state.calls.count('imds.token'), 0)
  for (const path of ['/healthz', '/readyz', '/metrics']) {
    assert.notEqual((await request(path, { Metadata: null })).status, 400, path)
  }
  assert.equal((await request(`/token?resource=${mgmt}`, { Metadata: 'True' })).status, 200)
  assert.equal(emulator.state.calls.count('imds.token'), 1)
})

test('a Host that does not name the sidecar, or none, is refused with 403 on every token route', async (t) => {
  const { request, emulator } = await startInProcessApp(t)
  for (const path of tokenRoutes) {
    for (const host of ['evil.example', 'evil.example:7780', '169.254.169.254:8080', 'a:b:c', null]) {
      const res = await request(path, { Host: host })
      assert.equal(res.status, 403, `${path} Host: ${host}`)
      const body = await json(res)
      assert.equal(body.error, 'forbidden')
      assert.match(body.error_description, /Host header/)
    }
  }
  assert.equal(emulator.state.calls.count('imds.token'), 0)
  for (const host of ['localhost', 'localhost:7780', '127.0.0.1:7780', '[::1]:7780']) {
    assert.equal((await request(`/token?resource=${mgmt}`, { Host: host })).status, 200, `Host: ${host}`)
  }
})

test('forwarding headers are refused with 403 naming the header, before any upstream call', async (t) => {
  const { request, emulator } = await startInProcessApp(t)
  for (const path of tokenRoutes) {
    for (const header of forwardingHeaders) {
      const res = await request(path, { [header]: '10.0.0.1' })
      assert.equal(res.status, 403, `${path} ${header}`)
      const body = await json(res)
      assert.equal(body.error, 'forbidden')
      assert.match(body.error_description, new RegExp(`\\(${header} header\\)`))
    }
  }
  assert.equal(emulator.state.calls.count('imds.token'), 0)
})

test('while draining, token routes answer 503 shutting_down with Retry-After; /healthz still answers', async (t) => {
  const { request, surface } = await startInProcessApp(t)
  surface.readiness.markDraining()
  const res = await request(`/token?resource=${mgmt}`)
  assert.equal(res.status, 503)
  assert.equal(res.headers.get('retry-after'), '1')
  assert.equal((await json(res)).error, 'shutting_down')
  assert.equal((await request('/healthz')).status, 200)
  assert.equal((await request('/readyz')).status, 503)
})

test('the IMDS route alone accepts Host 169.254.169.254, with or without :80 (a redirected IMDS request)', async (t) => {
  const { request, emulator } = await startInProcessApp(t)
  const imds = `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${mgmt}`
  for (const host of ['169.254.169.254', '169.254.169.254:80']) {
    assert.equal((await request(imds, { Host: host })).status, 200, host)
    for (const path of [`/token?resource=${mgmt}`, '/credential']) {
      assert.equal((await request(path, { Host: host })).status, 403, `${path} Host: ${host}`)
    }
  }
  // Metadata, forwarding headers and every other check still apply under that Host.
  assert.equal((await request(imds, { Host: '169.254.169.254', Metadata: null })).status, 400)
  assert.equal((await request(imds, { Host: '169.254.169.254', 'X-Forwarded-For': '10.0.0.1' })).status, 403)
  assert.equal((await request(imds, { Host: '169.254.169.254:81' })).status, 403)
  assert.equal(emulator.state.calls.count('imds.token'), 1)
})

test('a GET with a body is refused 400 with Connection: close on the token routes', async (t) => {
  const { app } = await startInProcessApp(t)
  for (const headers of [{ 'content-length': '5' }, { 'transfer-encoding': 'chunked' }]) {
    const res = await app.request(`/token?resource=${mgmt}`, {
      headers: { Host: '127.0.0.1', Metadata: 'true', ...headers },
    })
    assert.equal(res.status, 400, JSON.stringify(headers))
    assert.equal(res.headers.get('connection'), 'close')
    assert.match((await json(res)).error_description, /must not carry a body/)
  }
})
