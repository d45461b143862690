import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createPrivateKey } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseAppCertificate } from '../../sidecar/src/credentials/app-certificate.ts'
import { CertificateAuthority } from '../../sidecar/src/emulator/pki/certificate-authority.ts'
import { readPkcs12, writePkcs12 } from '../../sidecar/src/pki/pkcs12.ts'

const day = 24 * 3600_000

async function issued() {
  const ca = await CertificateAuthority.create()
  const leaf = await ca.issueWithNewKey({
    subject: [{ shortName: 'CN', value: 'app' }],
    usage: 'client',
    validityMs: 30 * day,
  })
  return { ca, leaf }
}

test('PEM: chain order does not matter, the leaf is the certificate that matches the key; x5c chain keeps the rest', async () => {
  const { ca, leaf } = await issued()
  const parsed = parseAppCertificate(
    Buffer.from(ca.certificatePem + leaf.privateKeyPem + leaf.certificatePem),
    undefined,
    Date.now(),
  )
  assert.equal(parsed.binding.x5tS256, leaf.x5tS256)
  assert.equal(parsed.binding.keyProtection, 'software')
  assert.match(parsed.binding.privateKeyPem, /^-----BEGIN PRIVATE KEY-----/)
  assert.equal(parsed.chainPem.match(/BEGIN CERTIFICATE/g)?.length, 2)
  assert.ok(parsed.chainPem.startsWith(parsed.binding.certificatePem))
})

test('PEM: encrypted PKCS#8 needs certificatePassword; a wrong one is a clear reason', async () => {
  const { leaf } = await issued()
  const encrypted = createPrivateKey(leaf.privateKeyPem)
    .export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'pem-pass-123' })
    .toString()
  const bytes = Buffer.from(leaf.certificatePem + encrypted)
  assert.equal(parseAppCertificate(bytes, 'pem-pass-123', Date.now()).binding.x5tS256, leaf.x5tS256)
  assert.throws(() => parseAppCertificate(bytes, undefined, Date.now()), /encrypted: set certificatePassword/)
  assert.throws(() => parseAppCertificate(bytes, 'nope', Date.now()), /wrong certificatePassword/)
})

test('refused: a key that matches no certificate, an expired certificate, a file that is neither format', async () => {
  const { leaf } = await issued()
  const other = await issued()
  assert.throws(
    () =>
      parseAppCertificate(Buffer.from(leaf.certificatePem + other.leaf.privateKeyPem), undefined, Date.now()),
    /does not match/,
  )
  assert.throws(
    () =>
      parseAppCertificate(
        Buffer.from(leaf.certificatePem + leaf.privateKeyPem),
        undefined,
        Date.now() + 60 * day,
      ),
    /expired on/,
  )
  assert.throws(
    () => parseAppCertificate(Buffer.from('hello'), undefined, Date.now()),
    /neither a PEM certificate nor a PKCS#12/,
  )
  assert.throws(
    () => parseAppCertificate(Buffer.from([0x30, 0x82, 0x01, 0x00, 0x02]), undefined, Date.now()),
    /PKCS#12/,
  )
})

test('PKCS#12 round trip (AES-256 and legacy 3DES); wrong and missing passwords say so', async () => {
  const { ca, leaf } = await issued()
  for (const algorithm of ['aes256', '3des'] as const) {
    const pfx = writePkcs12({
      certificatesPem: [leaf.certificatePem, ca.certificatePem],
      privateKeyPem: leaf.privateKeyPem,
      password: 'pw-123',
      algorithm,
    })
    const contents = readPkcs12(pfx, 'pw-123')
    assert.equal(contents.certificatesPem.length, 2)
    assert.equal(parseAppCertificate(pfx, 'pw-123', Date.now()).binding.x5tS256, leaf.x5tS256)
    assert.throws(() => parseAppCertificate(pfx, 'wrong', Date.now()), /PKCS#12 password is wrong/)
    assert.throws(
      () => parseAppCertificate(pfx, undefined, Date.now()),
      /password-protected: set certificatePassword/,
    )
  }
})

test('PKCS#12 from OpenSSL: an EC key, and a file with an empty password', async (t) => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' })
  } catch {
    t.skip('openssl not installed')
    return
  }
  const dir = mkdtempSync(join(tmpdir(), 'p12-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' })
  run('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ec.key')
  run('req', '-x509', '-key', 'ec.key', '-out', 'ec.crt', '-subj', '/CN=ec-app', '-days', '2')
  run('pkcs12', '-export', '-inkey', 'ec.key', '-in', 'ec.crt', '-out', 'ec.pfx', '-passout', 'pass:ec-pass')
  run('pkcs12', '-export', '-inkey', 'ec.key', '-in', 'ec.crt', '-out', 'empty.pfx', '-passout', 'pass:')
  const ec = parseAppCertificate(readFileSync(join(dir, 'ec.pfx')), 'ec-pass', Date.now())
  assert.equal(createPrivateKey(ec.binding.privateKeyPem).asymmetricKeyType, 'ec')
  assert.match(ec.subject, /CN=ec-app/)
  const empty = parseAppCertificate(readFileSync(join(dir, 'empty.pfx')), undefined, Date.now())
  assert.equal(empty.binding.x5tS256, ec.binding.x5tS256)
})
