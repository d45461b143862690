import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isSidecarError } from '../../sidecar/src/core/errors.ts'
import {
  isTenantedAuthority,
  authorityMtlsTokenEndpoint,
  authorityTokenEndpoint,
} from '../../sidecar/src/upstream/entra/mtls-endpoint.ts'

const tenant = 'contoso.onmicrosoft.com'

// Cases checked against MSAL.NET RegionAndMtlsDiscoveryProvider.cs / KnownMetadataProvider.cs and
// MSAL Go's TestMtlsTokenEndpoint table.
const cases: [authority: string, region: string | undefined, expected: string][] = [
  [
    'https://login.microsoftonline.com',
    'westus3',
    `https://westus3.mtlsauth.microsoft.com/${tenant}/oauth2/v2.0/token`,
  ],
  [
    'https://login.microsoftonline.com/',
    undefined,
    `https://mtlsauth.microsoft.com/${tenant}/oauth2/v2.0/token`,
  ],
  [
    'https://login.microsoft.com',
    'eastus',
    `https://eastus.mtlsauth.microsoft.com/${tenant}/oauth2/v2.0/token`,
  ],
  ['https://login.windows.net', undefined, `https://mtlsauth.microsoft.com/${tenant}/oauth2/v2.0/token`],
  [
    'https://login.microsoftonline.us',
    undefined,
    `https://mtlsauth.microsoftonline.us/${tenant}/oauth2/v2.0/token`,
  ],
  [
    'https://login.microsoftonline.us',
    'usgovvirginia',
    `https://usgovvirginia.mtlsauth.microsoftonline.us/${tenant}/oauth2/v2.0/token`,
  ],
  [
    'https://login.usgovcloudapi.net',
    'usgovvirginia',
    `https://usgovvirginia.mtlsauth.microsoftonline.us/${tenant}/oauth2/v2.0/token`,
  ],
  [
    'https://login.partner.microsoftonline.cn',
    undefined,
    `https://mtlsauth.partner.microsoftonline.cn/${tenant}/oauth2/v2.0/token`,
  ],
  [
    'https://login.partner.microsoftonline.cn',
    'chinanorth3',
    `https://chinanorth3.mtlsauth.partner.microsoftonline.cn/${tenant}/oauth2/v2.0/token`,
  ],
  [
    'https://login.chinacloudapi.cn',
    undefined,
    `https://mtlsauth.partner.microsoftonline.cn/${tenant}/oauth2/v2.0/token`,
  ],
  [
    'https://login.microsoftonline.de',
    'germanywestcentral',
    `https://germanywestcentral.mtlsauth.microsoftonline.de/${tenant}/oauth2/v2.0/token`,
  ],
  ['https://login.example.com', 'eastus', `https://eastus.mtlsauth.example.com/${tenant}/oauth2/v2.0/token`],
  [
    'https://login.microsoftonline.com:8443',
    'westus',
    `https://westus.mtlsauth.microsoft.com:8443/${tenant}/oauth2/v2.0/token`,
  ],
  [
    'https://LOGIN.MicrosoftOnline.com',
    undefined,
    `https://mtlsauth.microsoft.com/${tenant}/oauth2/v2.0/token`,
  ],
  // Not login.*: used as-is, port kept (emulator, private clouds).
  ['https://127.0.0.1:44321', 'westus3', `https://127.0.0.1:44321/${tenant}/oauth2/v2.0/token`],
  [
    'https://entra.contoso.internal:9443/',
    undefined,
    `https://entra.contoso.internal:9443/${tenant}/oauth2/v2.0/token`,
  ],
]

test('authority host → mTLS token endpoint', () => {
  for (const [authority, region, expected] of cases) {
    assert.equal(
      authorityMtlsTokenEndpoint(authority, tenant, region),
      expected,
      `${authority} ${region ?? '(no region)'}`,
    )
  }
})

test('regular token endpoint keeps the authority host', () => {
  assert.equal(
    authorityTokenEndpoint('https://login.microsoftonline.com/', 'tid'),
    'https://login.microsoftonline.com/tid/oauth2/v2.0/token',
  )
  assert.equal(
    authorityTokenEndpoint('https://127.0.0.1:1234', 'tid'),
    'https://127.0.0.1:1234/tid/oauth2/v2.0/token',
  )
})

test('non-tenanted authorities are refused with a clear message', () => {
  for (const bad of ['common', 'ORGANIZATIONS', 'Consumers', '', ' ']) {
    assert.equal(isTenantedAuthority(bad), false, bad)
    assert.throws(
      () => authorityMtlsTokenEndpoint('https://login.microsoftonline.com', bad, 'westus'),
      (e: unknown) => isSidecarError(e) && /not a tenanted authority/.test(e.message),
    )
    assert.throws(() => authorityTokenEndpoint('https://login.microsoftonline.com', bad))
  }
  assert.equal(isTenantedAuthority('00000000-0000-0000-0000-000000000000'), true)
})

test('an authority that is not an https URL is refused', () => {
  assert.throws(() => authorityMtlsTokenEndpoint('login.microsoftonline.com', tenant), /absolute URL/)
  assert.throws(() => authorityMtlsTokenEndpoint('ftp://login.microsoftonline.com', tenant), /https URL/)
  assert.throws(() => authorityMtlsTokenEndpoint('https://login.microsoftonline.com?x=1', tenant), /query/)
})
