import { test } from 'node:test'
import assert from 'node:assert/strict'
import { defaultConfig } from '../../sidecar/src/config/load.ts'
import { client, parse, parseError, assertIssue, tenant, yaml } from './helpers.ts'

const systemMi = {
  kind: 'managedIdentity',
  name: 'mi',
  selector: { kind: 'system' },
  protocolScheme: 'Bearer',
  useBoundCredential: false,
  warm: false,
  allowBearerFallback: false,
  clientCapabilities: [],
}

test('an empty file resolves to every documented default', () => {
  const config = parse('')
  assert.equal(config.source, 'config.yaml')
  assert.deepEqual(config.listen, { host: '127.0.0.1', port: 7780, allowNonLoopback: false, backlog: 4096 })
  assert.deepEqual(config.callers, { requireMetadataHeader: true, exposePrivateKey: true })
  assert.deepEqual(config.upstream, {
    imdsEndpoint: 'http://169.254.169.254',
    authorityHost: 'https://login.microsoftonline.com',
    timeoutMs: 10000,
    requestDeadlineMs: 20000,
  })
  assert.deepEqual(config.cache, { maxTokens: 10000 })
  assert.deepEqual(config.log, { level: 'info' })
  assert.equal(config.shutdownGraceMs, 10000)
  assert.equal(config.defaultIdentity, 'mi')
  assert.deepEqual([...config.identities.entries()], [['mi', systemMi]])
  assert.equal(config.downstreamApis.size, 0)
  assert.deepEqual(config.compat, { agentIdSidecar: false })
})

test('a file with only comments, or empty sections, is the default config', () => {
  const config = parse(yaml('# nothing yet', 'listen:', 'downstreamApis:'))
  assert.deepEqual(config.listen, { host: '127.0.0.1', port: 7780, allowNonLoopback: false, backlog: 4096 })
  assert.deepEqual([...config.identities.keys()], ['mi'])
})

test('defaultConfig() is the system-assigned managed identity "mi" with no source', () => {
  const config = defaultConfig({})
  assert.equal(config.source, undefined)
  assert.equal(config.defaultIdentity, 'mi')
  assert.deepEqual([...config.identities.values()], [systemMi])
  assert.deepEqual(config, { ...parse(''), source: undefined })
})

test('AZURE_POD_IDENTITY_AUTHORITY_HOST sets the IMDS endpoint unless the file does', () => {
  const env = { AZURE_POD_IDENTITY_AUTHORITY_HOST: 'http://127.0.0.1:9999/' }
  assert.equal(defaultConfig(env).upstream.imdsEndpoint, 'http://127.0.0.1:9999')
  assert.equal(parse('', env).upstream.imdsEndpoint, 'http://127.0.0.1:9999')
  const explicit = parse(yaml('upstream:', '  imdsEndpoint: http://127.0.0.1:1234'), env)
  assert.equal(explicit.upstream.imdsEndpoint, 'http://127.0.0.1:1234')
  assert.throws(
    () => defaultConfig({ AZURE_POD_IDENTITY_AUTHORITY_HOST: 'not a url' }),
    /AZURE_POD_IDENTITY_AUTHORITY_HOST/,
  )
})

test('CREDENTIAL_SIDECAR_LOG_LEVEL sets the log level unless the file does', () => {
  assert.equal(parse('', { CREDENTIAL_SIDECAR_LOG_LEVEL: 'debug' }).log.level, 'debug')
  assert.equal(
    parse(yaml('log:', '  level: warn'), { CREDENTIAL_SIDECAR_LOG_LEVEL: 'debug' }).log.level,
    'warn',
  )
  assertIssue(
    parseError('', { CREDENTIAL_SIDECAR_LOG_LEVEL: 'loud' }),
    '1:1',
    'log.level',
    'CREDENTIAL_SIDECAR_LOG_LEVEL',
  )
})

test('explicit values replace every default', () => {
  const config = parse(
    yaml(
      'listen:',
      '  host: ::1',
      '  port: 0',
      '  socket: /run/sidecar.sock',
      '  backlog: 64',
      'callers:',
      '  requireMetadataHeader: false',
      '  secretFile: /run/secret',
      '  exposePrivateKey: false',
      'upstream:',
      '  imdsEndpoint: http://127.0.0.1:8080/',
      '  authorityHost: https://login.microsoftonline.us/',
      '  caFile: /etc/ca.pem',
      '  timeoutMs: 500',
      '  requestDeadlineMs: 900',
      'cache:',
      '  maxTokens: 5',
      'log:',
      '  level: silent',
      'shutdownGraceMs: 250',
    ),
  )
  assert.deepEqual(config.listen, {
    host: '::1',
    port: 0,
    socket: '/run/sidecar.sock',
    allowNonLoopback: false,
    backlog: 64,
  })
  assert.deepEqual(config.callers, {
    requireMetadataHeader: false,
    secretFile: '/run/secret',
    exposePrivateKey: false,
  })
  assert.deepEqual(config.upstream, {
    imdsEndpoint: 'http://127.0.0.1:8080',
    authorityHost: 'https://login.microsoftonline.us',
    caFile: '/etc/ca.pem',
    timeoutMs: 500,
    requestDeadlineMs: 900,
  })
  assert.deepEqual(config.cache, { maxTokens: 5 })
  assert.deepEqual(config.log, { level: 'silent' })
  assert.equal(config.shutdownGraceMs, 250)
})

test('managed identity defaults and selectors', () => {
  const config = parse(
    yaml(
      'defaultIdentity: sys',
      'identities:',
      '  sys:',
      '    managedIdentity: {}',
      '  bare:',
      '    managedIdentity:',
      '  byClient:',
      '    managedIdentity: { userAssignedClientId: c1 }',
      '  byObject:',
      '    managedIdentity: { userAssignedObjectId: o1 }',
      '  byResource:',
      '    managedIdentity: { userAssignedResourceId: /subscriptions/s/rg/r }',
      '    protocolScheme: MTLS_POP',
      '    useBoundCredential: true',
      '    warm: true',
      '    warmResource: https://management.azure.com',
      '    bindingStore: /var/lib/sidecar/binding.json',
      '    allowBearerFallback: true',
      '    clientCapabilities: [cp1, cp1, CP2]',
    ),
  )
  assert.deepEqual([...config.identities.keys()], ['sys', 'bare', 'byClient', 'byObject', 'byResource'])
  assert.deepEqual(config.identities.get('sys'), { ...systemMi, name: 'sys' })
  assert.deepEqual(config.identities.get('bare'), { ...systemMi, name: 'bare' })
  assert.deepEqual(config.identities.get('byClient'), {
    ...systemMi,
    name: 'byClient',
    selector: { kind: 'clientId', value: 'c1' },
  })
  assert.deepEqual(config.identities.get('byObject'), {
    ...systemMi,
    name: 'byObject',
    selector: { kind: 'objectId', value: 'o1' },
  })
  assert.deepEqual(config.identities.get('byResource'), {
    kind: 'managedIdentity',
    name: 'byResource',
    selector: { kind: 'resourceId', value: '/subscriptions/s/rg/r' },
    protocolScheme: 'MTLS_POP',
    useBoundCredential: true,
    warm: true,
    warmResource: 'https://management.azure.com',
    bindingStore: '/var/lib/sidecar/binding.json',
    allowBearerFallback: true,
    clientCapabilities: ['cp1', 'CP2'],
  })
})

test('confidential client defaults: authority from upstream, Bearer, no x5c, FIC exchange URL, unbound', () => {
  const config = parse(
    yaml(
      'upstream:',
      '  authorityHost: https://login.example.test',
      'identities:',
      '  app:',
      `    tenantId: ${tenant}`,
      `    clientId: ${client}`,
      '    clientCredentials:',
      '      - sourceType: SignedAssertionFromManagedIdentity',
      '      - sourceType: Path',
      '        certificateDiskPath: /certs/app.pem',
      '      - sourceType: Base64Encoded',
      '        base64EncodedValue: TUlJQw==',
      '      - sourceType: SignedAssertionFilePath',
      '        signedAssertionFileDiskPath: /var/run/token',
      '      - sourceType: ClientSecret',
      '        clientSecret: s3cret',
    ),
  )
  assert.equal(config.defaultIdentity, 'app')
  assert.deepEqual(config.identities.get('app'), {
    kind: 'confidentialClient',
    name: 'app',
    protocolScheme: 'Bearer',
    warm: false,
    allowBearerFallback: false,
    clientCapabilities: [],
    tenantId: tenant,
    clientId: client,
    authorityHost: 'https://login.example.test',
    sendX5C: false,
    clientCredentials: [
      {
        sourceType: 'SignedAssertionFromManagedIdentity',
        tokenExchangeUrl: 'api://AzureADTokenExchange',
        useBoundCredential: false,
      },
      { sourceType: 'Path', certificateDiskPath: '/certs/app.pem', useBoundCredential: false },
      { sourceType: 'Base64Encoded', base64EncodedValue: 'TUlJQw==', useBoundCredential: false },
      { sourceType: 'SignedAssertionFilePath', signedAssertionFileDiskPath: '/var/run/token' },
      { sourceType: 'ClientSecret', clientSecret: 's3cret' },
    ],
  })
})

test('confidential client: instance (Microsoft.Identity.Web) or authorityHost override upstream, trailing slash dropped', () => {
  const identity = (key: string) =>
    parse(
      yaml(
        'identities:',
        '  app:',
        '    tenantId: contoso.onmicrosoft.com',
        `    clientId: ${client}`,
        `    ${key}: https://login.microsoftonline.de/`,
        '    azureRegion: westus3',
        '    sendX5C: true',
        '    clientCredentials:',
        '      - sourceType: ClientSecret',
        '        clientSecret: x',
      ),
    ).identities.get('app')
  for (const key of ['instance', 'authorityHost']) {
    const app = identity(key)
    assert.equal(app?.kind, 'confidentialClient')
    if (app?.kind !== 'confidentialClient') continue
    assert.equal(app.authorityHost, 'https://login.microsoftonline.de')
    assert.equal(app.azureRegion, 'westus3')
    assert.equal(app.sendX5C, true)
    assert.equal(app.tenantId, 'contoso.onmicrosoft.com')
  }
})

test('downstream APIs: identity defaults to defaultIdentity, baseUrl loses its trailing slash', () => {
  const config = parse(
    yaml(
      'downstreamApis:',
      '  graph:',
      '    baseUrl: https://mtlstb.graph.microsoft.com/v1.0/',
      '    scopes: [https://graph.microsoft.com/.default]',
      '  local:',
      '    baseUrl: http://127.0.0.1:8443',
      '    identity: mi',
      '    scopes: [api://local/.default]',
    ),
  )
  assert.deepEqual(config.downstreamApis.get('graph'), {
    name: 'graph',
    baseUrl: 'https://mtlstb.graph.microsoft.com/v1.0',
    identity: 'mi',
    scopes: ['https://graph.microsoft.com/.default'],
  })
  assert.equal(config.downstreamApis.get('local')?.baseUrl, 'http://127.0.0.1:8443')
})
