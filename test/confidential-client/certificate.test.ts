import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createPrivateKey, X509Certificate } from 'node:crypto'
import { rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose'
import type { SeenTokenRequest } from '../../sidecar/src/emulator/entra.ts'
import { writePkcs12 } from '../../sidecar/src/pki/pkcs12.ts'
import { splitPemCertificates, x5tS256 } from '../../sidecar/src/pki/x509.ts'
import { SkippingClock } from '../support/fake-clock.ts'
import { startStack, type StackOptions } from '../support/stack.ts'
import { callDemoResource, issueAppCertificate, secretsInLogs } from './stack.ts'

const graph = 'https://graph.microsoft.com'

async function pemFile(
  dir: string,
  name: string,
  cert: { certificatePem: string; privateKeyPem: string },
): Promise<string> {
  const path = join(dir, name)
  await writeFile(path, cert.certificatePem + cert.privateKeyPem)
  return path
}

/** An app stack whose identity `app` is MTLS_POP with one certificate file (app.pem), plus `extraLines`. */
async function popCertificateStack(
  t: TestContext,
  emulator: StackOptions['emulator'],
  extraLines: string[] = [],
) {
  let cert!: Awaited<ReturnType<typeof issueAppCertificate>>
  const stack = await startStack(t, {
    ...(emulator ? { emulator } : {}),
    register: async ({ emulator, dir }) => {
      cert = await issueAppCertificate(emulator)
      await pemFile(dir, 'app.pem', cert)
      return { certificates: [cert.certificatePem] }
    },
    app: ({ dir }) =>
      [
        '    protocolScheme: MTLS_POP',
        ...extraLines,
        '    clientCredentials:',
        '      - sourceType: Path',
        `        certificateDiskPath: ${join(dir, 'app.pem')}`,
      ].join('\n'),
  })
  return { stack, cert }
}

for (const sendX5C of [false, true]) {
  test(`certificate, not bound (private_key_jwt to the regular endpoint), sendX5C: ${sendX5C} → Bearer`, async (t) => {
    let keyPem = ''
    const stack = await startStack(t, {
      register: async ({ emulator, dir, clientId }) => {
        // With x5c, subject name + issuer authentication: a CA-issued CN=<clientId> certificate
        // that is NOT registered on the app. Without it, a registered one.
        const cert = await issueAppCertificate(emulator, sendX5C ? clientId : 'app')
        keyPem = cert.privateKeyPem
        await pemFile(dir, 'app.pem', cert)
        return sendX5C ? {} : { certificates: [cert.certificatePem] }
      },
      app: ({ dir }) =>
        [
          `    sendX5C: ${sendX5C}`,
          '    clientCredentials:',
          '      - sourceType: Path',
          `        certificateDiskPath: ${join(dir, 'app.pem')}`,
        ].join('\n'),
    })
    const { status, body } = await stack.token(graph)
    assert.equal(status, 200, JSON.stringify(body))
    assert.equal(body.token_type, 'Bearer')
    assert.equal(body.identity, 'app')
    assert.equal(body.binding_certificate, undefined)
    const claims = decodeJwt(body.access_token)
    assert.equal(claims['appid'], stack.clientId)
    assert.equal(claims['cnf'], undefined)
    assert.equal(stack.emulator.state.calls.count('entra.token'), 1)
    assert.equal(stack.emulator.state.calls.count('entra.mtls.token'), 0)
    assert.deepEqual(secretsInLogs(stack.logs, [body.access_token, keyPem.split('\n')[1]!]), [])
  })
}

test('an x5c-only (unregistered) certificate without sendX5C is refused: 502 with the AADSTS code passed through', async (t) => {
  const stack = await startStack(t, {
    register: async ({ emulator, dir, clientId }) => {
      await pemFile(dir, 'app.pem', await issueAppCertificate(emulator, clientId))
      return {}
    },
    app: ({ dir }) =>
      [
        '    clientCredentials:',
        '      - sourceType: Path',
        `        certificateDiskPath: ${join(dir, 'app.pem')}`,
      ].join('\n'),
  })
  const { status, body } = await stack.token(graph)
  assert.equal(status, 502)
  assert.equal(body.error, 'upstream_error')
  assert.deepEqual(body.error_codes, [700027])
  assert.match(body.error_description, /refused the client credential/)
})

test('certificate with useBoundCredential: presented over mTLS with a jwt-bearer assertion (x5c, aud = mTLS endpoint) → Bearer; /credential returns the bundle', async (t) => {
  let cert!: Awaited<ReturnType<typeof issueAppCertificate>>
  const seen: SeenTokenRequest[] = []
  const stack = await startStack(t, {
    emulator: { entra: { onTokenRequest: (request) => seen.push(request) } },
    register: async ({ emulator, dir }) => {
      cert = await issueAppCertificate(emulator)
      await pemFile(dir, 'app.pem', cert)
      return { certificates: [cert.certificatePem] }
    },
    app: ({ dir }) =>
      [
        '    clientCredentials:',
        '      - sourceType: Path',
        `        certificateDiskPath: ${join(dir, 'app.pem')}`,
        '        useBoundCredential: true',
      ].join('\n'),
  })
  const { status, body } = await stack.token(stack.emulator.resourceAudience)
  assert.equal(status, 200, JSON.stringify(body))
  assert.equal(body.token_type, 'Bearer')
  assert.equal(body.binding_certificate, undefined)
  assert.equal(decodeJwt(body.access_token)['cnf'], undefined)
  assert.equal(stack.emulator.state.calls.count('entra.mtls.token'), 1)
  assert.equal(stack.emulator.state.calls.count('entra.token'), 0)
  const bearer = await callDemoResource(stack.emulator, `Bearer ${body.access_token}`)
  assert.equal(bearer.status, 200)

  // On the wire: the certificate in the TLS handshake AND a private_key_jwt signed by it.
  const [request] = seen
  assert.ok(request)
  assert.equal(request.clientCertificate, cert.x5tS256, 'TLS client certificate = the app certificate')
  assert.equal(
    request.form.get('client_assertion_type'),
    'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
  )
  assert.equal(request.form.get('client_info'), '2')
  assert.equal(request.form.get('token_type'), null)
  const assertion = request.form.get('client_assertion') ?? ''
  const header = decodeProtectedHeader(assertion)
  assert.equal(header['x5t#S256'], cert.x5tS256)
  assert.deepEqual(
    header.x5c,
    [new X509Certificate(cert.certificatePem).raw.toString('base64')],
    'x5c always sent',
  )
  const claims = decodeJwt(assertion)
  // aud = the endpoint it is posted to (here the authority host is used as-is for mTLS).
  assert.equal(claims.aud, `${stack.emulator.entraUrl}/${stack.tenantId}/oauth2/v2.0/token`)
  assert.equal(claims.iss, stack.clientId)
  assert.equal(claims.sub, stack.clientId)
  await jwtVerify(assertion, new X509Certificate(cert.certificatePem).publicKey)
  assert.deepEqual(secretsInLogs(stack.logs, [assertion]), [])

  const bundle = await stack.credential()
  assert.equal(bundle.status, 200, JSON.stringify(bundle.body))
  assert.equal(bundle.body.identity, 'app')
  assert.equal(bundle.body.client_id, stack.clientId)
  assert.equal(bundle.body.tenant_id, stack.tenantId)
  assert.equal(bundle.body.token_endpoint, `${stack.emulator.entraUrl}/${stack.tenantId}/oauth2/v2.0/token`)
  assert.equal(bundle.body.binding_certificate['x5t#S256'], cert.x5tS256)
  assert.equal(bundle.body.assertion, undefined)
})

test('certificate with MTLS_POP and allowBearerFallback: Entra answering Bearer is served, logged and counted once (by the credential, not the token client as well)', async (t) => {
  const { stack } = await popCertificateStack(t, { settings: { entraIgnoresPopRequest: true } }, [
    '    allowBearerFallback: true',
  ])
  const { status, body } = await stack.token(stack.emulator.resourceAudience)
  assert.equal(status, 200, JSON.stringify(body))
  assert.equal(body.token_type, 'Bearer')
  assert.equal(body.binding_certificate, undefined)
  const metrics = await (await stack.get('/metrics')).text()
  assert.match(metrics, /^credential_sidecar_bearer_fallback_total\{identity="app"\} 1$/m)
  const logged = stack.logs.records.filter((r) => r['event'] === 'bearer_fallback')
  assert.equal(logged.length, 1, stack.logs.text)
  assert.equal(logged[0]?.['via'], 'answered')
  assert.match(String(logged[0]?.['credential']), /clientCredentials\[0\] \(Path /)
})

test('certificate with MTLS_POP: token bound to the app certificate (no client assertion sent), /token returns it, the resource accepts it', async (t) => {
  const seen: SeenTokenRequest[] = []
  const { stack, cert } = await popCertificateStack(t, {
    entra: { onTokenRequest: (request) => seen.push(request) },
  })
  const { status, body } = await stack.token(stack.emulator.resourceAudience)
  assert.equal(status, 200, JSON.stringify(body))
  assert.equal(body.token_type, 'mtls_pop')
  assert.equal(seen[0]?.form.get('token_type'), 'mtls_pop')
  assert.equal(seen[0]?.form.get('client_assertion'), null, 'mTLS PoP: the certificate alone authenticates')
  assert.equal(seen[0]?.form.get('client_assertion_type'), null)
  assert.equal(seen[0]?.clientCertificate, cert.x5tS256)
  const claims = decodeJwt(body.access_token)
  assert.deepEqual(claims['cnf'], { 'x5t#S256': cert.x5tS256 })
  assert.equal(body.binding_certificate['x5t#S256'], cert.x5tS256)
  assert.equal(createPrivateKey(body.binding_certificate.private_key).asymmetricKeyType, 'rsa')
  assert.equal(x5tS256(body.binding_certificate.certificate), cert.x5tS256)

  const ok = await callDemoResource(stack.emulator, `mtls_pop ${body.access_token}`, body.binding_certificate)
  assert.equal(ok.status, 200, JSON.stringify(ok.body))
  assert.equal(ok.body['appid'], stack.clientId)
  // Without the certificate the token is useless.
  const other = await issueAppCertificate(stack.emulator)
  const refused = await callDemoResource(stack.emulator, `mtls_pop ${body.access_token}`, {
    certificate: other.certificatePem,
    private_key: other.privateKeyPem,
  })
  assert.equal(refused.status, 401)
})

test("an unregistered certificate over mTLS is refused with Entra's AADSTS code (502, error_codes passed through)", async (t) => {
  const stack = await startStack(t, {
    register: async ({ emulator, dir }) => {
      await pemFile(dir, 'app.pem', await issueAppCertificate(emulator))
      return {}
    },
    app: ({ dir }) =>
      [
        '    protocolScheme: MTLS_POP',
        '    clientCredentials:',
        '      - sourceType: Path',
        `        certificateDiskPath: ${join(dir, 'app.pem')}`,
      ].join('\n'),
  })
  const { status, body } = await stack.token(graph)
  assert.equal(status, 502)
  assert.equal(body.error, 'upstream_error')
  assert.deepEqual(body.error_codes, [700027])
  // invalid_client → the file is re-read and the request retried once, then the answer stands.
  assert.equal(stack.emulator.state.calls.count('entra.mtls.token'), 2)
})

test('PKCS#12 with a password (node-forge and OpenSSL 3 files), detected by content not extension', async (t) => {
  let cert!: Awaited<ReturnType<typeof issueAppCertificate>>
  const password = 'pfx-pa55word-ab12'
  const stack = await startStack(t, {
    register: async ({ emulator, dir }) => {
      cert = await issueAppCertificate(emulator)
      const pfx = writePkcs12({
        certificatesPem: [cert.certificatePem, emulator.caPem],
        privateKeyPem: cert.privateKeyPem,
        password,
      })
      // Named .pem on purpose: the format is told by content.
      await writeFile(join(dir, 'forge.pem'), pfx)
      await writeFile(join(dir, 'leaf.pem'), cert.certificatePem + cert.privateKeyPem)
      try {
        // OpenSSL 3's default: PBES2/AES-256-CBC, HMAC-SHA256 MAC.
        execFileSync(
          'openssl',
          [
            'pkcs12',
            '-export',
            '-in',
            join(dir, 'leaf.pem'),
            '-out',
            join(dir, 'openssl.pfx'),
            '-passout',
            `pass:${password}`,
          ],
          {
            stdio: 'ignore',
          },
        )
      } catch {
        await writeFile(
          join(dir, 'openssl.pfx'),
          writePkcs12({
            certificatesPem: [cert.certificatePem],
            privateKeyPem: cert.privateKeyPem,
            password,
            algorithm: '3des',
          }),
        )
      }
      return { certificates: [cert.certificatePem] }
    },
    env: { CERT_PASSWORD: password },
    app: ({ dir, clientId, emulator }) =>
      [
        '    protocolScheme: MTLS_POP',
        '    clientCredentials:',
        '      - sourceType: Path',
        `        certificateDiskPath: ${join(dir, 'forge.pem')}`,
        '        certificatePassword: ${CERT_PASSWORD}',
        '  openssl:',
        `    tenantId: ${emulator.state.tenantId}`,
        `    clientId: ${clientId}`,
        '    clientCredentials:',
        '      - sourceType: Path',
        `        certificateDiskPath: ${join(dir, 'openssl.pfx')}`,
        '        certificatePassword: ${CERT_PASSWORD}',
      ].join('\n'),
  })
  const pop = await stack.token(graph)
  assert.equal(pop.status, 200, JSON.stringify(pop.body))
  assert.equal(pop.body.binding_certificate['x5t#S256'], cert.x5tS256)
  // The leaf is the certificate that matches the key; the CA that came with it is not presented.
  assert.equal(x5tS256(pop.body.binding_certificate.certificate), cert.x5tS256)
  assert.equal(splitPemCertificates(pop.body.binding_certificate.certificate).length, 1)
  const bearer = await stack.token(graph, 'openssl')
  assert.equal(bearer.status, 200, JSON.stringify(bearer.body))
  assert.equal(bearer.body.token_type, 'Bearer')
  assert.deepEqual(secretsInLogs(stack.logs, [password]), [])
})

test('a PKCS#12 file with the wrong password does not load: the reason is logged, the password is not', async (t) => {
  const password = 'right-password-123'
  const wrong = 'wrong-password-456'
  const stack = await startStack(t, {
    register: async ({ emulator, dir }) => {
      const cert = await issueAppCertificate(emulator)
      await writeFile(
        join(dir, 'app.pfx'),
        writePkcs12({ certificatesPem: [cert.certificatePem], privateKeyPem: cert.privateKeyPem, password }),
      )
      return { certificates: [cert.certificatePem] }
    },
    app: ({ dir }) =>
      [
        '    clientCredentials:',
        '      - sourceType: Path',
        `        certificateDiskPath: ${join(dir, 'app.pfx')}`,
        `        certificatePassword: ${wrong}`,
      ].join('\n'),
  })
  const { status, body } = await stack.token(graph)
  assert.equal(status, 503)
  assert.equal(body.error, 'credential_unavailable')
  assert.match(body.error_description, /PKCS#12 password is wrong/)
  const logged = stack.logs.records.find(
    (r) => r['msg'] === 'client credential did not load; trying the next one',
  )
  assert.match(String(logged?.['reason']), /PKCS#12 password is wrong/)
  assert.deepEqual(secretsInLogs(stack.logs, [password, wrong]), [])
  assert.equal(stack.emulator.state.calls.count('entra.token'), 0)
})

test('Base64Encoded: base64 of a PKCS#12 file, and base64 of PEM text with a PKCS#1 key', async (t) => {
  let certA!: Awaited<ReturnType<typeof issueAppCertificate>>
  let certB!: Awaited<ReturnType<typeof issueAppCertificate>>
  const stack = await startStack(t, {
    register: async ({ emulator }) => {
      certA = await issueAppCertificate(emulator)
      certB = await issueAppCertificate(emulator)
      return { certificates: [certA.certificatePem, certB.certificatePem] }
    },
    app: ({ clientId, emulator }) => {
      const pfx = writePkcs12({
        certificatesPem: [certA.certificatePem],
        privateKeyPem: certA.privateKeyPem,
        password: 'b64-pfx-pass',
      })
      const pkcs1 = createPrivateKey(certB.privateKeyPem).export({ type: 'pkcs1', format: 'pem' }).toString()
      // Key first, certificate second: order in the file does not matter.
      const pem = Buffer.from(pkcs1 + certB.certificatePem).toString('base64')
      return [
        '    protocolScheme: MTLS_POP',
        '    clientCredentials:',
        '      - sourceType: Base64Encoded',
        `        base64EncodedValue: ${pfx.toString('base64')}`,
        '        certificatePassword: b64-pfx-pass',
        '  pem:',
        `    tenantId: ${emulator.state.tenantId}`,
        `    clientId: ${clientId}`,
        '    protocolScheme: MTLS_POP',
        '    clientCredentials:',
        '      - sourceType: Base64Encoded',
        `        base64EncodedValue: ${pem}`,
      ].join('\n')
    },
  })
  const a = await stack.token(graph)
  assert.equal(a.status, 200, JSON.stringify(a.body))
  assert.deepEqual(decodeJwt(a.body.access_token)['cnf'], { 'x5t#S256': certA.x5tS256 })
  const b = await stack.token(graph, 'pem')
  assert.equal(b.status, 200, JSON.stringify(b.body))
  assert.deepEqual(decodeJwt(b.body.access_token)['cnf'], { 'x5t#S256': certB.x5tS256 })
})

test('a rotated certificate file is used for the next token without a restart (new x5t#S256, new cache entry)', async (t) => {
  let first!: Awaited<ReturnType<typeof issueAppCertificate>>
  let second!: Awaited<ReturnType<typeof issueAppCertificate>>
  const clock = new SkippingClock()
  const stack = await startStack(t, {
    clock,
    register: async ({ emulator, dir }) => {
      first = await issueAppCertificate(emulator)
      second = await issueAppCertificate(emulator)
      await pemFile(dir, 'app.pem', first)
      return { certificates: [first.certificatePem, second.certificatePem] }
    },
    app: ({ dir }) =>
      [
        '    protocolScheme: MTLS_POP',
        '    clientCredentials:',
        '      - sourceType: Path',
        `        certificateDiskPath: ${join(dir, 'app.pem')}`,
      ].join('\n'),
  })
  const before = await stack.token(graph)
  assert.equal(before.status, 200, JSON.stringify(before.body))
  assert.equal(before.body.binding_certificate['x5t#S256'], first.x5tS256)
  const cached = await stack.token(graph)
  assert.equal(cached.body.access_token, before.body.access_token)

  // Rotate the way Kubernetes and cert managers do: write a new file, rename it over the old one.
  await writeFile(join(stack.dir, 'app.pem.new'), second.certificatePem + second.privateKeyPem)
  await rename(join(stack.dir, 'app.pem.new'), join(stack.dir, 'app.pem'))
  clock.skip(1100) // the file is checked at most once a second

  const after = await stack.token(graph)
  assert.equal(after.status, 200, JSON.stringify(after.body))
  assert.equal(after.body.binding_certificate['x5t#S256'], second.x5tS256)
  assert.deepEqual(decodeJwt(after.body.access_token)['cnf'], { 'x5t#S256': second.x5tS256 })
  assert.notEqual(after.body.access_token, before.body.access_token)
  assert.ok(
    stack.logs.records.some((r) => r['event'] === 'certificate_rotated' && r['x5t#S256'] === second.x5tS256),
  )
})
