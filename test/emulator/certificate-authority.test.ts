import { test } from 'node:test'
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { CertificateAuthority } from '../../sidecar/src/emulator/pki/certificate-authority.ts'
import { certificateInfo, publicKeysMatch, x5tS256 } from '../../sidecar/src/pki/x509.ts'

test('the test CA issues client and server certificates that chain to it', async () => {
  const ca = await CertificateAuthority.create()
  const client = await ca.issueWithNewKey({
    subject: [{ shortName: 'CN', value: 'app' }],
    validityMs: 3600_000,
    usage: 'client',
  })
  const server = await ca.issueWithNewKey({
    subject: [{ shortName: 'CN', value: 'localhost' }],
    validityMs: 3600_000,
    usage: 'server',
    serverNames: ['localhost', '127.0.0.1'],
  })
  const root = new X509Certificate(ca.certificatePem)
  assert.ok(new X509Certificate(client.certificatePem).verify(root.publicKey))
  assert.ok(new X509Certificate(client.certificatePem).checkIssued(root))
  assert.ok(new X509Certificate(server.certificatePem).checkIP('127.0.0.1'))
  assert.ok(publicKeysMatch(client.certificatePem, client.privateKeyPem))
  assert.ok(!publicKeysMatch(client.certificatePem, server.privateKeyPem))
  const info = certificateInfo(client.certificatePem)
  assert.equal(info.x5tS256, x5tS256(client.certificatePem))
  assert.match(info.x5tS256, /^[A-Za-z0-9_-]{43}$/)
  assert.ok(info.notAfter - info.notBefore >= 3600_000)
})
