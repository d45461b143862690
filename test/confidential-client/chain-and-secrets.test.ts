import { test } from 'node:test'
import assert from 'node:assert/strict'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { decodeJwt } from 'jose'
import { parseConfig } from '../../sidecar/src/config/load.ts'
import { registerWorkloadIssuer } from '../../sidecar/src/emulator/entra.ts'
import { SkippingClock } from '../support/fake-clock.ts'
import { startStack } from '../support/stack.ts'
import { issueAppCertificate, secretsInLogs } from './stack.ts'

const graph = 'https://graph.microsoft.com'

test('SignedAssertionFilePath: the projected token is re-read on every use (jwt-bearer, Bearer)', async (t) => {
  const subject = 'system:serviceaccount:default:workload'
  let issuer!: Awaited<ReturnType<typeof registerWorkloadIssuer>>
  const stack = await startStack(t, {
    register: async ({ emulator, dir }) => {
      issuer = await registerWorkloadIssuer(emulator.state, 'https://oidc.aks.example/cluster-1/')
      await writeFile(join(dir, 'token'), await issuer.sign({ subject }))
      return { federatedIssuers: [{ issuer: issuer.issuer, subject }] }
    },
    app: ({ dir }) =>
      [
        '    clientCredentials:',
        '      - sourceType: SignedAssertionFilePath',
        `        signedAssertionFileDiskPath: ${join(dir, 'token')}`,
      ].join('\n'),
  })
  const first = await stack.token(graph)
  assert.equal(first.status, 200, JSON.stringify(first.body))
  assert.equal(first.body.token_type, 'Bearer')
  assert.equal(decodeJwt(first.body.access_token)['appid'], stack.clientId)

  // kubelet rotates the file; the old token (now expired) must not be used again. A different
  // resource, so the token cache cannot hide a stale read.
  const expired = await issuer.sign({ subject, lifetimeSec: -60 })
  await writeFile(join(stack.dir, 'token'), expired)
  const refused = await stack.token('https://vault.azure.net')
  assert.equal(refused.status, 502)
  assert.deepEqual(refused.body.error_codes, [700024])

  const fresh = await issuer.sign({ subject })
  await writeFile(join(stack.dir, 'token'), fresh)
  const second = await stack.token('https://storage.azure.com')
  assert.equal(second.status, 200, JSON.stringify(second.body))
  assert.equal(stack.emulator.state.calls.count('entra.token'), 3)
  assert.equal((await stack.credential()).status, 409)
  assert.deepEqual(secretsInLogs(stack.logs, [fresh, expired, first.body.access_token]), [])
})

test('ClientSecret → Bearer; /credential is 409; the secret never reaches the logs', async (t) => {
  const secret = 'app-secret~0123456789abcdefghij'
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
  const { status, body } = await stack.token(graph)
  assert.equal(status, 200, JSON.stringify(body))
  assert.equal(body.token_type, 'Bearer')
  assert.equal(decodeJwt(body.access_token)['appid'], stack.clientId)
  const bundle = await stack.credential()
  assert.equal(bundle.status, 409)
  assert.equal(bundle.body.error, 'no_bound_credential')
  assert.match(bundle.body.error_description, /client secret/)
  assert.deepEqual(secretsInLogs(stack.logs, [secret, body.access_token]), [])
})

test('a wrong client secret is 502 with AADSTS7000215 passed through', async (t) => {
  const stack = await startStack(t, {
    register: () => ({ clientSecrets: ['the-right-secret-value'] }),
    app: () =>
      [
        '    clientCredentials:',
        '      - sourceType: ClientSecret',
        '        clientSecret: not-the-right-secret',
      ].join('\n'),
  })
  const { status, body } = await stack.token(graph)
  assert.equal(status, 502)
  assert.deepEqual(body.error_codes, [7000215])
  assert.deepEqual(secretsInLogs(stack.logs, ['not-the-right-secret', 'the-right-secret-value']), [])
})

test('the chain falls through a certificate file deleted after start to the next credential and logs why', async (t) => {
  const secret = 'fallback-secret-0123456789'
  // A file missing at start stops the daemon (contract §2); one that goes away later is logged and skipped.
  const stack = await startStack(t, {
    register: () => ({ clientSecrets: [secret] }),
    app: async ({ dir }) => {
      await writeFile(join(dir, 'missing.pem'), 'placeholder', { mode: 0o600 })
      return [
        '    clientCredentials:',
        '      - sourceType: Path',
        `        certificateDiskPath: ${join(dir, 'missing.pem')}`,
        '      - sourceType: ClientSecret',
        `        clientSecret: ${secret}`,
      ].join('\n')
    },
  })
  await rm(join(stack.dir, 'missing.pem'))
  const { status, body } = await stack.token(graph)
  assert.equal(status, 200, JSON.stringify(body))
  const failure = stack.logs.records.find(
    (r) => r['msg'] === 'client credential did not load; trying the next one',
  )
  assert.ok(failure, stack.logs.text)
  assert.match(String(failure['credential']), /clientCredentials\[0\] \(Path .*missing\.pem\)/)
  assert.match(
    String(failure['reason']),
    /identities\.app\.clientCredentials\[0\]\.certificateDiskPath: cannot read .*missing\.pem \(ENOENT\)/,
  )
  const using = stack.logs.records.find((r) => r['msg'] === 'using client credential')
  assert.equal(using?.['credential'], 'clientCredentials[1] (ClientSecret)')
  assert.deepEqual(secretsInLogs(stack.logs, [secret]), [])
})

test('a chosen certificate that stops loading (file deleted) makes the next acquisition walk the chain again', async (t) => {
  const secret = 'fallback-secret-abcdefghijkl'
  const clock = new SkippingClock()
  const stack = await startStack(t, {
    clock,
    register: async ({ emulator, dir }) => {
      const cert = await issueAppCertificate(emulator)
      await writeFile(join(dir, 'app.pem'), cert.certificatePem + cert.privateKeyPem)
      return { certificates: [cert.certificatePem], clientSecrets: [secret] }
    },
    app: ({ dir }) =>
      [
        '    clientCredentials:',
        '      - sourceType: Path',
        `        certificateDiskPath: ${join(dir, 'app.pem')}`,
        '      - sourceType: ClientSecret',
        `        clientSecret: ${secret}`,
      ].join('\n'),
  })
  assert.equal((await stack.token(graph)).status, 200)
  const using = () =>
    stack.logs.records.filter((r) => r['msg'] === 'using client credential').map((r) => r['credential'])
  assert.match(String(using()[0]), /Path/)
  await rm(join(stack.dir, 'app.pem'))
  clock.skip(1100) // past the once-a-second file check
  const after = await stack.token('https://vault.azure.net')
  assert.equal(after.status, 200, JSON.stringify(after.body))
  assert.deepEqual(using().length, 2)
  assert.equal(using()[1], 'clientCredentials[1] (ClientSecret)')
  assert.ok(
    stack.logs.records.some(
      (r) => r['msg'] === 'the client credential in use no longer loads; walking the chain again',
    ),
  )
})

test('when no credential loads, the answer names every reason', async (t) => {
  const stack = await startStack(t, {
    app: async ({ dir }) => {
      await writeFile(join(dir, 'missing.pem'), 'placeholder', { mode: 0o600 })
      await writeFile(join(dir, 'no-token'), 'placeholder', { mode: 0o600 })
      return [
        '    clientCredentials:',
        '      - sourceType: Path',
        `        certificateDiskPath: ${join(dir, 'missing.pem')}`,
        '      - sourceType: SignedAssertionFilePath',
        `        signedAssertionFileDiskPath: ${join(dir, 'no-token')}`,
      ].join('\n')
    },
  })
  await rm(join(stack.dir, 'missing.pem'))
  await rm(join(stack.dir, 'no-token'))
  const { status, body } = await stack.token(graph)
  assert.equal(status, 503)
  assert.equal(body.error, 'credential_unavailable')
  assert.match(
    body.error_description,
    /clientCredentials\[0\] \(Path .*\): identities\.app\.clientCredentials\[0\]\.certificateDiskPath: cannot read .*missing\.pem \(ENOENT\)/,
  )
  assert.match(
    body.error_description,
    /clientCredentials\[1\] \(SignedAssertionFilePath .*\): identities\.app\.clientCredentials\[1\]\.signedAssertionFileDiskPath: cannot read .*no-token \(ENOENT\)/,
  )
})

test('an MTLS_POP identity skips credentials that cannot bind, with the reason logged', async (t) => {
  let x5t = ''
  const stack = await startStack(t, {
    register: async ({ emulator, dir }) => {
      const cert = await issueAppCertificate(emulator)
      x5t = cert.x5tS256
      await writeFile(join(dir, 'app.pem'), cert.certificatePem + cert.privateKeyPem)
      return { certificates: [cert.certificatePem], clientSecrets: ['some-secret-value-123'] }
    },
    app: ({ dir }) =>
      [
        '    protocolScheme: MTLS_POP',
        '    clientCredentials:',
        '      - sourceType: ClientSecret',
        '        clientSecret: some-secret-value-123',
        '      - sourceType: Path',
        `        certificateDiskPath: ${join(dir, 'app.pem')}`,
      ].join('\n'),
  })
  const { status, body } = await stack.token(graph)
  assert.equal(status, 200, JSON.stringify(body))
  assert.equal(body.binding_certificate['x5t#S256'], x5t)
  const skipped = stack.logs.records.find((r) => r['msg'] === 'skipping a client credential')
  assert.match(String(skipped?.['reason']), /cannot give mtls_pop tokens/)
})

test('config: useBoundCredential / MTLS_POP on sources that cannot bind are rejected with the reason', () => {
  const base = (credential: string, scheme = '') =>
    [
      'identities:',
      '  app:',
      '    tenantId: 00000000-0000-0000-0000-000000000001',
      '    clientId: 11111111-1111-1111-1111-111111111111',
      ...(scheme ? [`    protocolScheme: ${scheme}`] : []),
      '    clientCredentials:',
      credential,
    ].join('\n')
  const cases: [string, RegExp][] = [
    [
      base('      - sourceType: ClientSecret\n        clientSecret: x\n        useBoundCredential: true'),
      /clientCredentials\[0\]\.useBoundCredential.*ClientSecret cannot bind: a client secret has no certificate to present over mTLS/s,
    ],
    [
      base(
        '      - sourceType: SignedAssertionFilePath\n        signedAssertionFileDiskPath: /t\n        useBoundCredential: true',
      ),
      /SignedAssertionFilePath cannot bind: a projected token file has no certificate/,
    ],
    [
      base('      - sourceType: ClientSecret\n        clientSecret: x', 'MTLS_POP'),
      /protocolScheme.*MTLS_POP needs a credential that can bind/s,
    ],
    [
      base(
        '      - sourceType: SignedAssertionFilePath\n        signedAssertionFileDiskPath: /t',
        'MTLS_POP',
      ),
      /MTLS_POP needs a credential that can bind.*SignedAssertionFilePath have no certificate/s,
    ],
  ]
  for (const [yaml, message] of cases) {
    assert.throws(
      () => parseConfig(yaml, { source: 'c.yaml', env: {} }),
      (error: Error) => {
        assert.match(error.message, message)
        return true
      },
    )
  }
  // The same sources are fine without binding.
  parseConfig(base('      - sourceType: ClientSecret\n        clientSecret: x'), {
    source: 'c.yaml',
    env: {},
  })
})
