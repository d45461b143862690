import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { chmodSync, chownSync, symlinkSync } from 'node:fs'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writePkcs12 } from '../../sidecar/src/pki/pkcs12.ts'
import { SkippingClock } from '../support/fake-clock.ts'
import { startStack } from '../support/stack.ts'
import { issueAppCertificate } from '../confidential-client/stack.ts'

/**
 * Certificate files (PEM or PKCS#12) and token files (contract §2): trusted only as regular files (a
 * symlink to one is fine) owned by the daemon's uid or root and not writable by group or others.
 * At start anything else, or a missing or unreadable file, stops the daemon with a message naming
 * the key; later (a rotation gone wrong) the credential is refused with a log line naming file and
 * key, and the chain moves on.
 */

const NOBODY = 65534
const graph = 'https://graph.microsoft.com'
const certKey = 'identities.app.clientCredentials[0].certificateDiskPath'
const tokenKey = 'identities.app.clientCredentials[0].signedAssertionFileDiskPath'

/** An app stack whose first credential is the certificate at `app.pem` (prepared by `prepare`), then a client secret. */
function certificateStack(
  t: TestContext,
  prepare: (path: string, pem: string) => Promise<void>,
  file = 'app.pem',
  clock?: SkippingClock,
) {
  const secret = 'fallback-secret-0123456789'
  return startStack(t, {
    ...(clock ? { clock } : {}),
    register: async ({ emulator, dir }) => {
      const cert = await issueAppCertificate(emulator)
      await prepare(join(dir, file), cert.certificatePem + cert.privateKeyPem)
      return { certificates: [cert.certificatePem], clientSecrets: [secret] }
    },
    app: ({ dir }) =>
      [
        '    clientCredentials:',
        '      - sourceType: Path',
        `        certificateDiskPath: ${join(dir, file)}`,
        '        certificatePassword: pw-123',
        '      - sourceType: ClientSecret',
        `        clientSecret: ${secret}`,
      ].join('\n'),
  })
}

const refusedAtStart: [string, (path: string, pem: string) => Promise<void>, RegExp][] = [
  [
    'owned by another uid',
    async (path, pem) => {
      await writeFile(path, pem, { mode: 0o600 })
      chownSync(path, NOBODY, NOBODY)
    },
    /is owned by uid 65534, neither the sidecar's uid \(0\) nor root/,
  ],
  ['mode 0666', async (path, pem) => (await writeFile(path, pem), chmodSync(path, 0o666)), /writable by/],
  [
    'mode 0620',
    async (path, pem) => (await writeFile(path, pem), chmodSync(path, 0o620)),
    /writable by its group \(mode 0620\)/,
  ],
  ['a FIFO', async (path) => void execFileSync('mkfifo', [path]), /is not a regular file \(a FIFO\)/],
  ['missing', async () => {}, /cannot read .*app\.pem \(ENOENT/],
  [
    'a symlink to a file another uid owns',
    async (path, pem) => {
      await writeFile(`${path}.real`, pem, { mode: 0o600 })
      chownSync(`${path}.real`, NOBODY, NOBODY)
      symlinkSync(`${path}.real`, path)
    },
    /owned by uid 65534/,
  ],
]

for (const [name, prepare, message] of refusedAtStart) {
  test(`a certificate file ${name} at start: the daemon does not start, and says which key`, async (t) => {
    const started = Date.now()
    await assert.rejects(certificateStack(t, prepare), (error: unknown) => {
      const text = String((error as Error).message)
      assert.ok(text.startsWith(`${certKey}: `), text)
      assert.match(text, message)
      return true
    })
    assert.ok(Date.now() - started < 15_000, 'no blocked read')
  })
}

test('a PKCS#12 file owned by another uid is refused at start the same way', async (t) => {
  await assert.rejects(
    certificateStack(
      t,
      async (path, pem) => {
        const key = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/.exec(pem)![0]
        const certificate = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem)![0]
        await writeFile(
          path,
          writePkcs12({ certificatesPem: [certificate], privateKeyPem: key, password: 'pw-123' }),
          {
            mode: 0o600,
          },
        )
        chownSync(path, NOBODY, NOBODY)
      },
      'app.pfx',
    ),
    (error: unknown) => {
      assert.match(
        String((error as Error).message),
        /^identities\.app\.clientCredentials\[0\]\.certificateDiskPath: .*app\.pfx is owned by uid 65534/,
      )
      return true
    },
  )
})

test('a root-owned 0644 certificate behind a symlink (a Kubernetes secret mount) is used', async (t) => {
  const stack = await certificateStack(t, async (path, pem) => {
    await writeFile(`${path}.data`, pem, { mode: 0o644 })
    symlinkSync(`${path}.data`, path)
  })
  const { status, body } = await stack.token(graph)
  assert.equal(status, 200, JSON.stringify(body))
  const using = stack.logs.records.find((r) => r['msg'] === 'using client credential')
  assert.match(String(using?.['credential']), /clientCredentials\[0\] \(Path/)
})

test('a certificate file that another uid takes over after start is refused (logged with file and key); the chain moves on', async (t) => {
  let path = ''
  const clock = new SkippingClock()
  const stack = await certificateStack(
    t,
    async (p, pem) => {
      path = p
      await writeFile(p, pem, { mode: 0o600 })
    },
    'app.pem',
    clock,
  )
  assert.equal((await stack.token(graph)).status, 200)
  chownSync(path, NOBODY, NOBODY)
  // Past the certificate's once-a-second file check, and past the first token's cache entry.
  clock.skip(1100)
  const { status, body } = await stack.token('https://vault.azure.net')
  assert.equal(status, 200, JSON.stringify(body))
  const refusal = stack.logs.records.find(
    (r) => typeof r['reason'] === 'string' && r['reason'].includes('owned by uid 65534'),
  )
  assert.ok(refusal, stack.logs.text)
  assert.ok(String(refusal['reason']).includes(certKey))
  assert.ok(String(refusal['reason']).includes(path))
  const using = stack.logs.records
    .filter((r) => r['msg'] === 'using client credential')
    .map((r) => r['credential'])
  assert.equal(using.at(-1), 'clientCredentials[1] (ClientSecret)')
})

test('a token file (SignedAssertionFilePath) that is missing or owned by another uid at start: not started, key named', async (t) => {
  for (const prepare of [
    async () => {},
    async (path: string) => {
      await writeFile(path, 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', { mode: 0o600 })
      chownSync(path, NOBODY, NOBODY)
    },
  ]) {
    await assert.rejects(
      startStack(t, {
        app: async ({ dir }) => {
          await prepare(join(dir, 'token'))
          return [
            '    clientCredentials:',
            '      - sourceType: SignedAssertionFilePath',
            `        signedAssertionFileDiskPath: ${join(dir, 'token')}`,
          ].join('\n')
        },
      }),
      (error: unknown) => {
        const text = String((error as Error).message)
        assert.ok(text.startsWith(`${tokenKey}: `), text)
        assert.match(text, /ENOENT|owned by uid 65534/)
        return true
      },
    )
  }
})

test('a token file replaced by a FIFO after start: refused at once, never a hung request', async (t) => {
  let path = ''
  const stack = await startStack(t, {
    app: async ({ dir }) => {
      path = join(dir, 'token')
      await writeFile(path, 'not-a-valid-assertion', { mode: 0o600 })
      return [
        '    clientCredentials:',
        '      - sourceType: SignedAssertionFilePath',
        `        signedAssertionFileDiskPath: ${path}`,
      ].join('\n')
    },
  })
  await rm(path)
  execFileSync('mkfifo', [path])
  const started = Date.now()
  const { status, body } = await stack.token(graph)
  assert.ok(Date.now() - started < 5000)
  assert.equal(status, 503, JSON.stringify(body))
  assert.equal(body.error, 'credential_unavailable')
  assert.match(JSON.stringify(body), /not a regular file \(a FIFO\)/)
})

/** An app stack whose only credential is the file `name` in its directory, written by `write`. */
async function onlyCredentialStack(
  t: TestContext,
  lines: (path: string) => string[],
  write: (path: string) => Promise<void>,
) {
  let path = ''
  const clock = new SkippingClock()
  const stack = await startStack(t, {
    clock,
    register: async ({ emulator, dir }) => {
      const cert = await issueAppCertificate(emulator)
      path = join(dir, 'credential')
      await writeFile(path, cert.certificatePem + cert.privateKeyPem, { mode: 0o600 })
      return { certificates: [cert.certificatePem] }
    },
    app: ({ dir }) => ['    clientCredentials:', ...lines(join(dir, 'credential'))].join('\n'),
  })
  await write(path)
  return { stack, clock, path }
}

/** What an operator-fixable credential problem answers on every token route (contract §3 shape). */
async function assertCredentialUnavailable(
  stack: Awaited<ReturnType<typeof startStack>>,
  description: RegExp,
): Promise<void> {
  const res = await stack.get(`/token?resource=${encodeURIComponent('https://vault.azure.net')}`)
  const body = (await res.json()) as Record<string, unknown>
  assert.equal(res.status, 503, JSON.stringify(body))
  assert.equal(res.headers.get('retry-after'), '5')
  assert.equal(res.headers.get('cache-control'), 'no-store')
  assert.equal(body['error'], 'credential_unavailable')
  assert.match(String(body['error_description']), description)
  assert.match(String(body['correlation_id']), /^[0-9a-f-]{36}$/)
}

const pathCertificate = (path: string) => ['      - sourceType: Path', `        certificateDiskPath: ${path}`]

test('the only certificate file deleted after start: 503 credential_unavailable with Retry-After, not 500', async (t) => {
  const { stack, clock, path } = await onlyCredentialStack(t, pathCertificate, async () => {})
  assert.equal((await stack.token(graph)).status, 200)
  await rm(path)
  clock.skip(1100)
  await assertCredentialUnavailable(
    stack,
    /clientCredentials\[0\] \(Path .*credential\): identities\.app\.clientCredentials\[0\]\.certificateDiskPath: cannot read .*credential \(ENOENT\)/,
  )
  // The IMDS route keeps it a 503 (only permanent refusals become 400 there): the SDKs retry, and
  // the file is looked at again on each retry.
  const imds = await stack.get(
    `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(graph)}`,
  )
  const body = (await imds.json()) as Record<string, unknown>
  assert.equal(imds.status, 503, JSON.stringify(body))
  assert.equal(imds.headers.get('retry-after'), '5')
  assert.equal(body['error'], 'credential_unavailable')
})

test('the only certificate file chowned to another uid after start: 503 credential_unavailable naming file and key', async (t) => {
  const { stack, clock, path } = await onlyCredentialStack(t, pathCertificate, async () => {})
  assert.equal((await stack.token(graph)).status, 200)
  chownSync(path, NOBODY, NOBODY)
  clock.skip(1100)
  await assertCredentialUnavailable(
    stack,
    new RegExp(`${certKey.replace(/[[\].]/g, '\\$&')}: .*owned by uid 65534`),
  )
})

test('the only certificate file no longer parsing after start: 503 credential_unavailable', async (t) => {
  const { stack, clock, path } = await onlyCredentialStack(t, pathCertificate, async () => {})
  assert.equal((await stack.token(graph)).status, 200)
  await writeFile(path, 'not a certificate\n', { mode: 0o600 })
  clock.skip(1100)
  await assertCredentialUnavailable(stack, /clientCredentials\[0\] \(Path /)
})

test('the only token file (SignedAssertionFilePath) emptied or deleted after start: 503 credential_unavailable', async (t) => {
  const { stack, path } = await onlyCredentialStack(
    t,
    (p) => ['      - sourceType: SignedAssertionFilePath', `        signedAssertionFileDiskPath: ${p}`],
    async (p) => writeFile(p, '\n', { mode: 0o600 }),
  )
  await assertCredentialUnavailable(stack, /SignedAssertionFilePath .*\): file is empty/)
  await rm(path)
  await assertCredentialUnavailable(
    stack,
    new RegExp(
      `SignedAssertionFilePath .*\\): ${tokenKey.replace(/[[\].]/g, '\\$&')}: cannot read .*credential \\(ENOENT\\)`,
    ),
  )
})
