import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { constants, generateKeyPairSync, randomUUID, verify } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import forge from 'node-forge'
import { buildCsr, cuIdJson, CUID_ATTRIBUTE_OID } from '../../sidecar/src/pki/csr.ts'
import { verifyCsr } from '../../sidecar/src/emulator/pki/csr-verify.ts'
import { SoftwareKeyProvider, softwareKey, type BindingKey } from '../../sidecar/src/pki/key-provider.ts'

const clientId = randomUUID()
const tenantId = randomUUID()
const cuId = cuIdJson({ vmId: randomUUID(), vmssId: null })
const expected = { clientId, tenantId, cuIdJson: cuId }
const keyPromise = new SoftwareKeyProvider().generate()

async function csrFor(key: BindingKey, overrides: Partial<typeof expected> = {}): Promise<string> {
  return buildCsr({
    ...expected,
    ...overrides,
    publicKeyPem: key.publicKeyPem,
    signPss: (d) => key.signPss(d),
  })
}

function hasOpenssl(): boolean {
  return spawnSync('openssl', ['version']).status === 0
}

test('cuIdJson keeps IMDS key order and drops nulls', () => {
  assert.equal(cuIdJson({ vmId: 'a', vmssId: null }), '{"vmId":"a"}')
  assert.equal(cuIdJson({ vmssId: 's', vmId: 'a' }), '{"vmssId":"s","vmId":"a"}')
})

test('a built CSR is plain base64 DER and passes the verifier', async () => {
  const key = await keyPromise
  const csr = await csrFor(key)
  assert.match(csr, /^[A-Za-z0-9+/]+={0,2}$/, 'no PEM armour, no line breaks')
  const result = verifyCsr(csr, expected)
  assert.ok(result.ok, JSON.stringify(result))
  assert.equal(result.csr.modulusBits, 2048)
  assert.equal(result.csr.cuIdJson, cuId)
  // MSAL's X500DistinguishedName("CN=…, DC=…") is encoded reversed: DC first in the DER.
  assert.deepEqual(
    result.csr.subject.map((n) => n.value),
    [tenantId, clientId],
  )
})

test('the verifier names the check that failed', async (t) => {
  const key = await keyPromise
  const good = await csrFor(key)

  await t.test('subject client id', async () => {
    const r = verifyCsr(await csrFor(key, { clientId: randomUUID() }), expected)
    assert.equal(r.ok ? 'ok' : r.check, 'subject')
  })
  await t.test('subject tenant id', async () => {
    const r = verifyCsr(await csrFor(key, { tenantId: randomUUID() }), expected)
    assert.equal(r.ok ? 'ok' : r.check, 'subject')
  })
  await t.test('cuId attribute', async () => {
    const r = verifyCsr(await csrFor(key, { cuIdJson: '{"vmId":"someone-else"}' }), expected)
    assert.equal(r.ok ? 'ok' : r.check, 'cuid_attribute')
  })
  await t.test('signature byte flipped', () => {
    const der = Buffer.from(good, 'base64')
    der[der.length - 1] = (der[der.length - 1] ?? 0) ^ 0x01
    const r = verifyCsr(der.toString('base64'), expected)
    assert.equal(r.ok ? 'ok' : r.check, 'signature')
  })
  await t.test('signed info tampered after signing', () => {
    const der = Buffer.from(good, 'base64')
    const at = der.indexOf(Buffer.from(clientId.slice(0, 8)))
    assert.ok(at > 0)
    der[at] = der[at] === 0x61 ? 0x62 : 0x61
    const r = verifyCsr(der.toString('base64'), {
      ...expected,
      clientId: der.subarray(at, at + 36).toString(),
    })
    assert.equal(r.ok ? 'ok' : r.check, 'signature')
  })
  await t.test('signed by another key', async () => {
    const other = await new SoftwareKeyProvider().generate()
    const csr = await buildCsr({
      ...expected,
      publicKeyPem: key.publicKeyPem,
      signPss: (d) => other.signPss(d),
    })
    const r = verifyCsr(csr, expected)
    assert.equal(r.ok ? 'ok' : r.check, 'signature')
  })
  await t.test('PSS salt length parameter', () => {
    const der = Buffer.from(good, 'base64')
    // [2] { INTEGER 32 } → [2] { INTEGER 20 }; the signature does not cover sigAlg.
    const at = der.indexOf(Buffer.from([0xa2, 0x03, 0x02, 0x01, 0x20]))
    assert.ok(at > 0)
    der[at + 4] = 0x14
    const r = verifyCsr(der.toString('base64'), expected)
    assert.equal(r.ok ? 'ok' : r.check, 'pss_parameters')
  })
  await t.test('PKCS#1 v1.5 signature algorithm', () => {
    const csr = forge.pki.createCertificationRequest()
    csr.publicKey = forge.pki.publicKeyFromPem(key.publicKeyPem)
    csr.setSubject([{ shortName: 'CN', value: clientId }])
    csr.sign(
      forge.pki.privateKeyFromPem(key.privateKeyPem) as forge.pki.rsa.PrivateKey,
      forge.md.sha256.create(),
    )
    const der = forge.asn1.toDer(forge.pki.certificationRequestToAsn1(csr)).getBytes()
    const r = verifyCsr(Buffer.from(der, 'binary').toString('base64'), expected)
    assert.equal(r.ok ? 'ok' : r.check, 'signature_algorithm')
  })
  await t.test('RSA key below 2048 bits', async () => {
    const pair = generateKeyPairSync('rsa', {
      modulusLength: 1024,
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    })
    const small = softwareKey({ privateKeyPem: pair.privateKey, publicKeyPem: pair.publicKey })
    const r = verifyCsr(await csrFor(small), expected)
    assert.equal(r.ok ? 'ok' : r.check, 'key_size')
  })
  await t.test('PEM armour is refused', () => {
    const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${good}\n-----END CERTIFICATE REQUEST-----\n`
    const r = verifyCsr(pem, expected)
    assert.equal(r.ok ? 'ok' : r.check, 'encoding')
  })
  await t.test('garbage', () => {
    const r = verifyCsr(Buffer.from('not a csr').toString('base64'), expected)
    assert.equal(r.ok ? 'ok' : r.check, 'structure')
  })
})

test('the signature is RSASSA-PSS with salt 32 over the CertificationRequestInfo (independent parse)', async () => {
  const key = await keyPromise
  const root = forge.asn1.fromDer(Buffer.from(await csrFor(key), 'base64').toString('binary'))
  const [info, , bits] = root.value as forge.asn1.Asn1[]
  assert.ok(info && bits)
  const data = Buffer.from(forge.asn1.toDer(info).getBytes(), 'binary')
  const signature = Buffer.from(
    (bits as unknown as { bitStringContents: string }).bitStringContents,
    'binary',
  ).subarray(1)
  const pss = (saltLength: number) => ({
    key: key.publicKeyPem,
    padding: constants.RSA_PKCS1_PSS_PADDING,
    saltLength,
  })
  assert.equal(verify('sha256', data, pss(32), signature), true)
  assert.equal(verify('sha256', data, pss(20), signature), false)
  assert.equal(
    verify('sha256', data, { key: key.publicKeyPem, padding: constants.RSA_PKCS1_PADDING }, signature),
    false,
  )
})

test('OpenSSL reads the CSR: rsassaPss, salt 0x20, subject, cuId attribute, valid self-signature', async (t) => {
  if (!hasOpenssl()) return t.skip('openssl CLI not available')
  const key = await keyPromise
  const dir = mkdtempSync(join(tmpdir(), 'csr-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'req.der')
  writeFileSync(file, Buffer.from(await csrFor(key), 'base64'))
  const text = execFileSync('openssl', ['req', '-inform', 'DER', '-in', file, '-noout', '-text', '-verify'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  assert.match(text, /Signature Algorithm: rsassaPss/)
  assert.match(text, /Hash Algorithm: sha256/)
  assert.match(text, /Mask Algorithm: mgf1 with sha256/)
  assert.match(text, /Salt Length: 0x20/)
  assert.match(text, new RegExp(`Subject: DC = ${tenantId}, CN = ${clientId}`))
  assert.ok(text.includes(`${CUID_ATTRIBUTE_OID}`) && text.includes(cuId), 'cuId attribute shown')
  assert.match(text, /Public-Key: \(2048 bit\)/)
  const verify = spawnSync('openssl', ['req', '-inform', 'DER', '-in', file, '-noout', '-verify'], {
    encoding: 'utf8',
  })
  assert.match(`${verify.stdout}${verify.stderr}`, /verify OK/)
  const rfc2253 = execFileSync(
    'openssl',
    ['req', '-inform', 'DER', '-in', file, '-noout', '-subject', '-nameopt', 'RFC2253'],
    {
      encoding: 'utf8',
    },
  )
  assert.match(rfc2253, new RegExp(`CN=${clientId},DC=${tenantId}`), 'reads as MSAL writes it: CN=…, DC=…')
})
