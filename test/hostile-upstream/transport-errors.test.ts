/**
 * What classifyTransportError calls a transport failure, and what it leaves alone: a programming
 * error is rethrown as it is, never reported (and retried) as "connection failed".
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Agent } from 'undici'
import { isSidecarError } from '../../sidecar/src/core/errors.ts'
import { sendHttp } from '../../sidecar/src/upstream/http.ts'
import { classifyTransportError } from '../../sidecar/src/upstream/transport-errors.ts'

const withCode = <E extends Error>(error: E, code: string): E => Object.assign(error, { code })

test('network and TLS failures are classified by their codes', () => {
  assert.equal(
    classifyTransportError(withCode(new Error('refused'), 'ECONNREFUSED'), false)?.reason,
    'connect_failure',
  )
  assert.equal(
    classifyTransportError(withCode(new Error('x'), 'UND_ERR_SOCKET'), false)?.reason,
    'connect_failure',
  )
  assert.equal(
    classifyTransportError(withCode(new Error('x'), 'UND_ERR_HEADERS_TIMEOUT'), false)?.reason,
    'timeout',
  )
  assert.equal(
    classifyTransportError(withCode(new Error('x'), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'), false)?.reason,
    'tls_failure',
  )
  // Node throws some TLS failures as TypeErrors: still TLS, not a bug.
  assert.equal(
    classifyTransportError(withCode(new TypeError('x'), 'ERR_TLS_INVALID_PROTOCOL_VERSION'), false)?.reason,
    'tls_failure',
  )
  // Our own deadline: the abort hides whatever was under way.
  assert.equal(classifyTransportError(new DOMException('t', 'TimeoutError'), true)?.reason, 'timeout')
})

test('a programming error is not a transport failure', () => {
  assert.equal(
    classifyTransportError(new TypeError("Cannot read properties of undefined (reading 'x')"), false),
    undefined,
  )
  assert.equal(classifyTransportError(new RangeError('Invalid array length'), false), undefined)
  assert.equal(classifyTransportError(new ReferenceError('x is not defined'), false), undefined)
  assert.equal(classifyTransportError(withCode(new TypeError('x'), 'ERR_INVALID_ARG_TYPE'), false), undefined)
  assert.equal(
    classifyTransportError(withCode(new Error('invalid header'), 'UND_ERR_INVALID_ARG'), false),
    undefined,
  )
})

test('sendHttp rethrows a programming error as it is, not as upstream_unavailable', async (t) => {
  const dispatcher = new Agent()
  t.after(() => dispatcher.close())
  // A header value no HTTP message may carry: undici refuses it before anything is sent.
  const error = await sendHttp(dispatcher, {
    method: 'GET',
    url: 'http://127.0.0.1:9/metadata/identity/oauth2/token',
    headers: { 'x-bad': 'a\r\nb' },
    timeoutMs: 1000,
  }).then(
    () => assert.fail('answered'),
    (e: unknown) => e,
  )
  assert.ok(!isSidecarError(error), `rethrown as it is: ${String(error)}`)
  assert.equal((error as { code?: string }).code, 'UND_ERR_INVALID_ARG')
})
