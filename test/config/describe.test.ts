import { test } from 'node:test'
import assert from 'node:assert/strict'
import { describeConfig } from '../../sidecar/src/config/describe.ts'
import { defaultConfig } from '../../sidecar/src/config/load.ts'
import { client, parse, tenant, yaml } from './helpers.ts'

const secrets = {
  CLIENT_SECRET: 'client-secret-value-9f8e',
  CERT_PASSWORD: 'cert-password-value-1a2b',
  CERT_BASE64: 'QkFTRTY0Q0VSVElGSUNBVEVWQUxVRQ==',
}

const full = yaml(
  'listen:',
  '  port: 0',
  '  socket: /run/credential-sidecar/sidecar.sock',
  'callers:',
  '  secretFile: /run/secrets/identity-header',
  'defaultIdentity: mi',
  'identities:',
  '  mi:',
  '    managedIdentity: {}',
  '    protocolScheme: MTLS_POP',
  '    warm: true',
  '    warmResource: https://management.azure.com',
  '  bound-bearer:',
  '    managedIdentity: { userAssignedClientId: 44444444-4444-4444-4444-444444444444 }',
  '    useBoundCredential: true',
  '  v1:',
  '    managedIdentity: { userAssignedResourceId: /subscriptions/s/resourceGroups/r/providers/x/y }',
  '  app:',
  `    tenantId: ${tenant}`,
  `    clientId: ${client}`,
  '    azureRegion: westus3',
  '    clientCredentials:',
  '      - sourceType: SignedAssertionFromManagedIdentity',
  '        managedIdentityClientId: 22222222-2222-2222-2222-222222222222',
  '        useBoundCredential: true',
  '      - sourceType: Path',
  '        certificateDiskPath: /certs/app.pem',
  '        certificatePassword: ${CERT_PASSWORD}',
  '        useBoundCredential: true',
  '      - sourceType: Base64Encoded',
  '        base64EncodedValue: ${CERT_BASE64}',
  '        certificatePassword: ${CERT_PASSWORD}',
  '      - sourceType: SignedAssertionFilePath',
  '        signedAssertionFileDiskPath: /var/run/secrets/azure/tokens/azure-identity-token',
  '      - sourceType: ClientSecret',
  '        clientSecret: ${CLIENT_SECRET}',
  'downstreamApis:',
  '  graph:',
  '    baseUrl: https://mtlstb.graph.microsoft.com',
  '    identity: app',
  '    scopes: [https://graph.microsoft.com/.default]',
)

test('describeConfig never prints a secret, password or inline certificate', () => {
  const text = describeConfig(parse(full, secrets))
  for (const value of Object.values(secrets)) assert.ok(!text.includes(value), `printed ${value}`)
  assert.match(text, /clientSecret: <set>/)
  assert.match(text, /base64EncodedValue: <set>/)
  assert.match(text, /certificatePassword: <set>/)
})

test('describeConfig shows listen address, default identity, kinds, schemes and IMDS versions', () => {
  const text = describeConfig(parse(full, secrets))
  assert.match(text, /^config: config\.yaml$/m)
  assert.match(
    text,
    /^listen: http:\/\/127\.0\.0\.1:0 \(any free port\), unix socket \/run\/credential-sidecar\/sidecar\.sock$/m,
  )
  assert.match(text, /^default identity: mi$/m)
  assert.match(
    text,
    /^ {2}mi \(default\)\n {4}kind: managed identity \(system-assigned\)\n {4}scheme: MTLS_POP, IMDS v2/m,
  )
  assert.match(
    text,
    /bound-bearer\n {4}kind: managed identity \(user-assigned, clientId 4444.*\n {4}scheme: Bearer, IMDS v2/,
  )
  assert.match(
    text,
    /v1\n {4}kind: managed identity \(user-assigned, resourceId .*\n {4}scheme: Bearer, IMDS v1$/m,
  )
  assert.match(text, /^ {4}tenant: 00000000-0000-0000-0000-000000000000$/m)
  assert.match(text, /^ {4}client id: 11111111-1111-1111-1111-111111111111$/m)
  assert.match(text, /^ {4}authority: https:\/\/login\.microsoftonline\.com\/0{8}-.*, region westus3$/m)
  assert.match(text, /1\. SignedAssertionFromManagedIdentity .*2222.*, bound/)
  assert.match(text, /2\. Path \/certs\/app\.pem, certificatePassword: <set>, bound/)
  assert.match(text, /3\. Base64Encoded .*unbound/)
  assert.match(
    text,
    /4\. SignedAssertionFilePath \/var\/run\/secrets\/azure\/tokens\/azure-identity-token, unbound/,
  )
  assert.match(text, /5\. ClientSecret clientSecret: <set>, unbound/)
  assert.match(
    text,
    /graph: https:\/\/mtlstb\.graph\.microsoft\.com as app, scopes https:\/\/graph\.microsoft\.com\/\.default/,
  )
})

test('describeConfig of the built-in default', () => {
  const text = describeConfig(defaultConfig({}))
  assert.match(
    text,
    /^config: \(none: from the environment, AZURE_\* and CREDENTIAL_SIDECAR_\*, and built-in defaults\)$/m,
  )
  assert.match(text, /^listen: http:\/\/127\.0\.0\.1:7780$/m)
  assert.match(
    text,
    /mi \(default\)\n {4}kind: managed identity \(system-assigned\)\n {4}scheme: Bearer, IMDS v1/,
  )
  assert.doesNotMatch(text, /downstream APIs/)
})

test('describeConfig brackets an IPv6 listen address', () => {
  assert.match(describeConfig(parse(yaml('listen:', '  host: "::1"'))), /^listen: http:\/\/\[::1\]:7780$/m)
})

test('describeConfig warns when compat.agentIdSidecar is on without callers.allow, and not with it', () => {
  const base = [
    'identities:',
    '  mi:',
    '    managedIdentity: {}',
    'downstreamApis:',
    '  graph:',
    '    baseUrl: https://graph.microsoft.com',
    '    identity: mi',
    '    scopes: [https://graph.microsoft.com/.default]',
    'compat:',
    '  agentIdSidecar: true',
  ]
  const open = describeConfig(parse(yaml(...base)))
  assert.match(open, /^warnings:\n {2}compat\.agentIdSidecar is on without callers\.allow: /m)
  const allowed = describeConfig(
    parse(yaml('callers:', '  allow:', '    - uid: 1000', '      identities: [mi]', ...base)),
  )
  assert.doesNotMatch(allowed, /^warnings:/m)
  assert.doesNotMatch(describeConfig(parse(yaml(...base.slice(0, -2)))), /^warnings:/m)
})
