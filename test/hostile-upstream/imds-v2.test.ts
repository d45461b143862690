import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startEmulator, type Emulator } from '../support/emulator.ts'
import { SkippingClock } from '../support/fake-clock.ts'
import { hostileDaemon, hostileServer, sendJson } from './support.ts'

/**
 * IMDS v2 answers that must be refused (contract §3): a certificate for another key, one already
 * expired, one not yet valid, an mtls_authentication_endpoint with a query, fragment or userinfo,
 * fields of the wrong type. An IMDS in front of the emulator forwards everything and rewrites
 * issuecredential's answer.
 */

const HOUR = 3600_000
const issuePath = '/metadata/identity/issuecredential'

async function forwardingImds(
  t: TestContext,
  emulator: Emulator,
  rewrite: (answer: Record<string, unknown>) => Record<string, unknown>,
) {
  return hostileServer(t, async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const headers = Object.fromEntries(
      Object.entries(req.headers).filter(
        ([k, v]) => typeof v === 'string' && k !== 'host' && k !== 'content-length',
      ),
    ) as Record<string, string>
    const upstream = await fetch(`${emulator.imdsUrl}${req.url}`, {
      method: req.method ?? 'GET',
      headers,
      ...(req.method === 'POST' ? { body: Buffer.concat(chunks) } : {}),
    })
    const text = await upstream.text()
    const path = new URL(req.url ?? '/', 'http://x').pathname
    if (path === issuePath && upstream.status === 200) {
      return sendJson(res, 200, rewrite(JSON.parse(text) as Record<string, unknown>))
    }
    res.writeHead(upstream.status, {
      'content-type': 'application/json',
      server: upstream.headers.get('server') ?? '',
    })
    res.end(text)
  })
}

/** The certificate IMDS issued, re-issued by the same CA with `publicKeyPem` and validity changed. */
function reissue(
  emulator: Emulator,
  answer: Record<string, unknown>,
  change: { publicKeyPem?: string; notBefore?: number; validityMs?: number },
): Record<string, unknown> {
  const original = new X509Certificate(Buffer.from(String(answer['certificate']), 'base64'))
  const pem = emulator.state.ca.issue({
    publicKeyPem:
      change.publicKeyPem ?? original.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    subject: [
      { shortName: 'DC', value: emulator.state.tenantId },
      { shortName: 'CN', value: String(answer['client_id']) },
    ],
    validityMs: change.validityMs ?? 7 * 24 * HOUR,
    notBefore: change.notBefore ?? Date.now() - 60_000,
    usage: 'client',
  })
  return { ...answer, certificate: new X509Certificate(pem).raw.toString('base64') }
}

async function popDaemon(
  t: TestContext,
  rewrite: (emulator: Emulator, answer: Record<string, unknown>) => Record<string, unknown>,
  clock?: SkippingClock,
) {
  const emulator = await startEmulator()
  t.after(() => emulator.close())
  const dir = mkdtempSync(join(tmpdir(), 'hostile-v2-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const caFile = join(dir, 'ca.pem')
  writeFileSync(caFile, emulator.caPem)
  const imds = await forwardingImds(t, emulator, (answer) => rewrite(emulator, answer))
  const daemon = await hostileDaemon(
    t,
    `upstream:\n  imdsEndpoint: ${imds.url}\n  authorityHost: ${emulator.entraUrl}\n  caFile: ${caFile}\n  timeoutMs: 3000\n  requestDeadlineMs: 8000\n` +
      'identities:\n  mi:\n    managedIdentity: {}\n    protocolScheme: MTLS_POP\n',
    clock ? { clock } : {},
  )
  const path = `/token?resource=${encodeURIComponent(emulator.resourceAudience)}`
  return { emulator, imds, daemon, path }
}

const cases: [
  string,
  RegExp,
  (emulator: Emulator, answer: Record<string, unknown>) => Record<string, unknown>,
][] = [
  [
    'a certificate for a key that is not the CSR key',
    /public key/,
    (emulator, answer) => {
      const other = generateKeyPairSync('rsa', { modulusLength: 2048 })
        .publicKey.export({ type: 'spki', format: 'pem' })
        .toString()
      return reissue(emulator, answer, { publicKeyPem: other })
    },
  ],
  [
    'a certificate that has already expired',
    /expired/,
    (emulator, answer) => reissue(emulator, answer, { notBefore: Date.now() - 3 * HOUR, validityMs: HOUR }),
  ],
  [
    'a certificate that is not valid yet',
    /not valid before/,
    (emulator, answer) =>
      reissue(emulator, answer, { notBefore: Date.now() + HOUR, validityMs: 7 * 24 * HOUR }),
  ],
  [
    'an mtls_authentication_endpoint with a query',
    /query, fragment or userinfo/,
    (_e, answer) => ({
      ...answer,
      mtls_authentication_endpoint: `${String(answer['mtls_authentication_endpoint'])}?tenant=evil`,
    }),
  ],
  [
    'an mtls_authentication_endpoint with a fragment',
    /query, fragment or userinfo/,
    (_e, answer) => ({
      ...answer,
      mtls_authentication_endpoint: `${String(answer['mtls_authentication_endpoint'])}#x`,
    }),
  ],
  [
    'an mtls_authentication_endpoint with userinfo',
    /query, fragment or userinfo/,
    (_e, answer) => ({
      ...answer,
      mtls_authentication_endpoint: String(answer['mtls_authentication_endpoint']).replace(
        'https://',
        'https://user:pw@',
      ),
    }),
  ],
  [
    'a certificate that is a number',
    /lacks certificate|not base64/,
    (_e, answer) => ({ ...answer, certificate: 12345 }),
  ],
  ['a client_id that is an object', /lacks client_id/, (_e, answer) => ({ ...answer, client_id: { id: 1 } })],
]

for (const [name, message, rewrite] of cases) {
  test(`issuecredential answers ${name}: 502, no token served, asked again later`, async (t) => {
    const clock = new SkippingClock()
    const { emulator, imds, daemon, path } = await popDaemon(t, rewrite, clock)
    const first = await daemon.get(path)
    assert.equal(first.status, 502, JSON.stringify(first.body))
    assert.equal(first.body.error, 'upstream_error')
    assert.match(first.body.error_description, message)
    assert.equal(emulator.state.calls.count('entra.mtls.token'), 0, 'nothing presented to Entra')
    // A failed mint is answered from its back-off for a second, then IMDS is asked again.
    clock.skip(1200)
    const second = await daemon.get(path)
    assert.equal(second.status, 502)
    assert.equal(imds.seen.count(issuePath), 2, 'the refused certificate was not kept')
  })
}

test('a well-behaved IMDS behind the same forwarder serves an mtls_pop token (the harness works)', async (t) => {
  const { daemon, path } = await popDaemon(t, (_e, answer) => answer)
  const res = await daemon.get(path)
  assert.equal(res.status, 200, JSON.stringify(res.body))
  assert.equal(res.body.token_type, 'mtls_pop')
})

test('a certificate whose base64 is wrapped in lines (CRLF, 64 columns) is the same DER: served', async (t) => {
  const { daemon, path } = await popDaemon(t, (_e, answer) => ({
    ...answer,
    certificate:
      String(answer['certificate'])
        .match(/.{1,64}/g)!
        .join('\r\n') + '\r\n',
  }))
  const res = await daemon.get(path)
  assert.equal(res.status, 200, JSON.stringify(res.body))
  assert.equal(res.body.token_type, 'mtls_pop')
})
