import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startStack } from '../support/stack.ts'

/**
 * Upstream error text that echoes what the daemon sent (a client secret, a client assertion, a
 * JWT) never reaches an error body or a log line, at any level.
 */

const graph = 'https://graph.microsoft.com'

test('Entra echoing the client secret (raw and form-encoded) in its error: not in the answer, not in the log', async (t) => {
  const secret = 'echo~Secret.0123456789+abc/def='
  const stack = await startStack(t, {
    register: () => ({ clientSecrets: [secret] }),
    env: { APP_SECRET: secret },
    app: () =>
      [
        '    clientCredentials:',
        '      - sourceType: ClientSecret',
        '        clientSecret: ${APP_SECRET}',
      ].join('\n'),
  })
  const encoded = new URLSearchParams({ client_secret: secret }).toString()
  stack.emulator.state.faults.script('entra.token', [
    {
      status: 401,
      body: {
        error: `invalid_client ${secret}`,
        error_description: `AADSTS7000215: Invalid client secret provided: '${secret}'. Request body was ${encoded}&client_id=x`,
        error_codes: [7000215],
        trace_id: secret,
        correlation_id: encodeURIComponent(secret),
      },
    },
  ])
  const { status, body } = await stack.token(graph)
  assert.equal(status, 502, JSON.stringify(body))
  assert.deepEqual(body.error_codes, [7000215])
  const answer = JSON.stringify(body)
  for (const form of [secret, encodeURIComponent(secret), encoded.slice('client_secret='.length)]) {
    assert.ok(!answer.includes(form), `the answer holds ${form}: ${answer}`)
    assert.ok(!stack.logs.text.includes(form), `the log holds ${form}`)
  }
  assert.match(body.error_description, /\[redacted\]/)
})

test('Entra echoing the client assertion (FIC leg 1 token, a JWT) in its error: blanked', async (t) => {
  const secret = 'assertion-fallback-secret-0123'
  const stack = await startStack(t, {
    register: () => ({ clientSecrets: [secret] }),
    app: () =>
      ['    clientCredentials:', '      - sourceType: ClientSecret', `        clientSecret: ${secret}`].join(
        '\n',
      ),
  })
  // A JWT-shaped value in the error: always blanked, whoever sent it.
  const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXRoYXQtaXMtbG9uZw'
  stack.emulator.state.faults.script('entra.token', [
    {
      status: 400,
      body: { error: 'invalid_request', error_description: `bad assertion ${jwt}`, error_codes: [50027] },
    },
  ])
  const { status, body } = await stack.token(graph)
  assert.ok(status >= 400)
  assert.ok(!JSON.stringify(body).includes(jwt))
  assert.ok(!stack.logs.text.includes(jwt))
})
