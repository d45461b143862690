import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Agent } from 'undici'
import { SidecarError } from '../../sidecar/src/core/errors.ts'
import { sendHttp } from '../../sidecar/src/upstream/http.ts'
import { hostileServer } from './support.ts'

test('an upstream that never answers times out with a clean sentence (no stray abort code)', async (t) => {
  const imds = await hostileServer(t, () => {
    // Never answers.
  })
  const dispatcher = new Agent()
  t.after(() => dispatcher.close())
  const error = await sendHttp(dispatcher, {
    method: 'GET',
    url: `${imds.url}/metadata/identity/oauth2/token?resource=x`,
    timeoutMs: 150,
  }).then(
    () => assert.fail('answered'),
    (e: unknown) => e,
  )
  assert.ok(error instanceof SidecarError)
  assert.equal(error.code, 'upstream_timeout')
  assert.equal(error.message, `${imds.url}/metadata/identity/oauth2/token did not answer within 150 ms`)
})
