import { test } from 'node:test'
import assert from 'node:assert/strict'
import { assertIssue, client, parse, parseError, tenant, yaml } from './helpers.ts'

/** A confidential client `app` whose credential list starts on line 6. */
const app = (...credentialLines: string[]) =>
  yaml(
    'identities:',
    '  app:',
    `    tenantId: ${tenant}`,
    `    clientId: ${client}`,
    '    clientCredentials:',
    ...credentialLines,
  )

test('useBoundCredential on a ClientSecret fails: a secret has no certificate', () => {
  const error = parseError(
    app('      - sourceType: ClientSecret', '        useBoundCredential: true', '        clientSecret: x'),
  )
  assertIssue(
    error,
    '7:9',
    'identities.app.clientCredentials[0].useBoundCredential',
    'ClientSecret cannot bind: a client secret has no certificate to present over mTLS',
  )
})

test('useBoundCredential on a SignedAssertionFilePath fails: a token file has no certificate', () => {
  const error = parseError(
    app(
      '      - sourceType: Path',
      '        certificateDiskPath: /c.pem',
      '      - sourceType: SignedAssertionFilePath',
      '        signedAssertionFileDiskPath: /t',
      '        useBoundCredential: false',
    ),
  )
  assertIssue(
    error,
    '10:9',
    'identities.app.clientCredentials[1].useBoundCredential',
    'SignedAssertionFilePath cannot bind: a projected token file has no certificate to present over mTLS',
  )
})

test('MTLS_POP with only unbindable credentials fails at protocolScheme', () => {
  const error = parseError(
    yaml(
      'identities:',
      '  app:',
      `    tenantId: ${tenant}`,
      `    clientId: ${client}`,
      '    protocolScheme: MTLS_POP',
      '    clientCredentials:',
      '      - sourceType: SignedAssertionFilePath',
      '        signedAssertionFileDiskPath: /t',
      '      - sourceType: ClientSecret',
      '        clientSecret: x',
    ),
  )
  assertIssue(
    error,
    '5:5',
    'identities.app.protocolScheme',
    'MTLS_POP needs a credential that can bind to a certificate',
  )
})

test('MTLS_POP is allowed over a certificate or FIC source whatever its useBoundCredential', () => {
  for (const source of [
    ['      - sourceType: Path', '        certificateDiskPath: /c.pem'],
    ['      - sourceType: Base64Encoded', '        base64EncodedValue: TUlJQw=='],
    ['      - sourceType: SignedAssertionFromManagedIdentity', '        useBoundCredential: false'],
  ]) {
    const config = parse(
      yaml(
        'identities:',
        '  app:',
        `    tenantId: ${tenant}`,
        `    clientId: ${client}`,
        '    protocolScheme: MTLS_POP',
        '    clientCredentials:',
        ...source,
        '      - sourceType: ClientSecret',
        '        clientSecret: x',
      ),
    )
    assert.equal(config.identities.get('app')?.protocolScheme, 'MTLS_POP')
  }
})

test('more than one user-assigned selector fails at the second one', () => {
  const error = parseError(
    yaml(
      'identities:',
      '  mi:',
      '    managedIdentity:',
      '      userAssignedClientId: c',
      '      userAssignedResourceId: /subscriptions/s',
    ),
  )
  assertIssue(
    error,
    '5:7',
    'identities.mi.managedIdentity.userAssignedResourceId',
    'set only one of userAssignedClientId',
  )
})

test('an identity cannot be both a managed identity and a confidential client', () => {
  const error = parseError(yaml('identities:', '  x:', '    managedIdentity: {}', `    clientId: ${client}`))
  assertIssue(
    error,
    '4:5',
    'identities.x.clientId',
    'either a managed identity (managedIdentity) or a confidential client',
  )
})

test('an identity of neither kind says what to add', () => {
  const error = parseError(yaml('identities:', '  x:', '    warm: true'))
  assertIssue(error, '2:3', 'identities.x', 'cannot tell what kind of identity this is')
})

test('tenant aliases are rejected: mTLS needs a tenanted authority', () => {
  for (const alias of ['common', 'organizations', 'Consumers']) {
    const error = parseError(
      yaml(
        'identities:',
        '  app:',
        `    tenantId: ${alias}`,
        `    clientId: ${client}`,
        '    clientCredentials:',
        '      - sourceType: ClientSecret',
        '        clientSecret: x',
      ),
    )
    assertIssue(
      error,
      '3:5',
      'identities.app.tenantId',
      'is not a tenant: mTLS and bound credentials need a tenanted authority',
    )
  }
  const junk = parseError(
    yaml(
      'identities:',
      '  app:',
      '    tenantId: not a tenant',
      `    clientId: ${client}`,
      '    clientCredentials:',
      '      - sourceType: ClientSecret',
      '        clientSecret: x',
    ),
  )
  assertIssue(junk, '3:5', 'identities.app.tenantId', 'expected a tenant GUID or domain name')
})

test('instance and authorityHost together are rejected', () => {
  const error = parseError(
    yaml(
      'identities:',
      '  app:',
      `    tenantId: ${tenant}`,
      `    clientId: ${client}`,
      '    instance: https://login.microsoftonline.com/',
      '    authorityHost: https://login.microsoftonline.com',
      '    clientCredentials: [{ sourceType: ClientSecret, clientSecret: x }]',
    ),
  )
  assertIssue(error, '6:5', 'identities.app.authorityHost', 'set either instance or authorityHost, not both')
})

test('at least one client credential', () => {
  const error = parseError(
    yaml(
      'identities:',
      '  app:',
      `    tenantId: ${tenant}`,
      `    clientId: ${client}`,
      '    clientCredentials: []',
    ),
  )
  assertIssue(error, '5:5', 'identities.app.clientCredentials', 'list at least one credential')
})

test('a non-loopback listen.host needs allowNonLoopback', () => {
  assertIssue(
    parseError(yaml('cache:', '  maxTokens: 1', 'listen:', '  host: 0.0.0.0')),
    '4:3',
    'listen.host',
    'is not a loopback address',
  )
  assertIssue(parseError(yaml('listen:', '  host: 10.1.2.3')), '2:3', 'listen.host', 'allowNonLoopback: true')
  assert.equal(parse(yaml('listen:', '  host: 0.0.0.0', '  allowNonLoopback: true')).listen.host, '0.0.0.0')
  for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', 'LOCALHOST']) {
    assert.equal(parse(yaml('listen:', `  host: "${host}"`)).listen.host, host)
  }
})

test('a bracketed IPv6 listen host ("[::1]", as URLs write it) is listened on as the bare address', () => {
  const config = parse(yaml('listen:', '  host: "[::1]"', '  ops:', '    host: "[::1]"', '    port: 0'))
  assert.equal(config.listen.host, '::1')
  assert.equal(config.listen.ops?.host, '::1')
  assertIssue(
    parseError(yaml('listen:', '  host: "[::]"')),
    '2:3',
    'listen.host',
    'is not a loopback address',
  )
})

test('a downstream API must name an existing identity', () => {
  const error = parseError(
    yaml(
      'downstreamApis:',
      '  graph:',
      '    baseUrl: https://graph.microsoft.com',
      '    identity: nope',
      '    scopes: [s]',
    ),
  )
  assertIssue(error, '4:5', 'downstreamApis.graph.identity', 'no identity is named "nope" (configured: mi)')
})

test('defaultIdentity must exist', () => {
  assertIssue(
    parseError(yaml('defaultIdentity: app')),
    '1:1',
    'defaultIdentity',
    'no identity is named "app"',
  )
})

test('defaultIdentity, when absent, is mi if configured, else the first identity', () => {
  const first = parse(
    yaml('identities:', '  a:', '    managedIdentity: {}', '  b:', '    managedIdentity: {}'),
  )
  assert.equal(first.defaultIdentity, 'a', 'absent: the first identity in file order')
  const mi = parse(yaml('identities:', '  a:', '    managedIdentity: {}', '  mi:', '    managedIdentity: {}'))
  assert.equal(mi.defaultIdentity, 'mi', 'absent: an identity named mi wins')
  const chosen = parse(
    yaml(
      'defaultIdentity: b',
      'identities:',
      '  a:',
      '    managedIdentity: {}',
      '  b:',
      '    managedIdentity: {}',
    ),
  )
  assert.equal(chosen.defaultIdentity, 'b')
})

test('an empty identities mapping is an error, not a silent default', () => {
  assertIssue(parseError(yaml('identities: {}')), '1:1', 'identities', 'define at least one identity')
})

test('downstream baseUrl: absolute https (http only on loopback), no query or fragment', () => {
  const api = (baseUrl: string) =>
    parseError(yaml('downstreamApis:', '  graph:', `    baseUrl: "${baseUrl}"`, '    scopes: [s]'))
  assertIssue(
    api('http://graph.microsoft.com'),
    '3:5',
    'downstreamApis.graph.baseUrl',
    'http is allowed only for loopback hosts',
  )
  assertIssue(
    api('https://graph.microsoft.com/?a=1'),
    '3:5',
    'downstreamApis.graph.baseUrl',
    'must not have a query string',
  )
  assertIssue(
    api('https://graph.microsoft.com/#x'),
    '3:5',
    'downstreamApis.graph.baseUrl',
    'must not have a fragment',
  )
  assertIssue(api('/relative'), '3:5', 'downstreamApis.graph.baseUrl', 'expected an absolute http(s) URL')
  assertIssue(
    api('https://user:pw@graph.microsoft.com'),
    '3:5',
    'downstreamApis.graph.baseUrl',
    'user name or password',
  )
  for (const loopback of ['http://127.0.0.1:9000', 'http://localhost:9000/api', 'http://[::1]:9000']) {
    const config = parse(yaml('downstreamApis:', '  local:', `    baseUrl: "${loopback}"`, '    scopes: [s]'))
    assert.ok(config.downstreamApis.has('local'))
  }
})

test('downstream scopes must be a non-empty list of non-empty strings', () => {
  const scopes = (value: string) =>
    parseError(yaml('downstreamApis:', '  graph:', '    baseUrl: https://g.test', `    scopes: ${value}`))
  assertIssue(scopes('[]'), '4:5', 'downstreamApis.graph.scopes', 'list at least one scope')
  assertIssue(
    scopes('https://g.test/.default'),
    '4:5',
    'downstreamApis.graph.scopes',
    'expected a list, got a string',
  )
  assertIssue(scopes('[""]'), '4:14', 'downstreamApis.graph.scopes[0]', 'must not be empty')
})

test('port is an integer in 0..65535, timeouts are positive integers', () => {
  assertIssue(parseError(yaml('listen:', '  port: 65536')), '2:3', 'listen.port', 'must be ≤ 65535')
  assertIssue(parseError(yaml('listen:', '  port: -1')), '2:3', 'listen.port', 'must be ≥ 0')
  assertIssue(parseError(yaml('listen:', '  port: 80.5')), '2:3', 'listen.port', 'expected an integer')
  assertIssue(parseError(yaml('upstream:', '  timeoutMs: 0')), '2:3', 'upstream.timeoutMs', 'must be > 0')
  assertIssue(
    parseError(yaml('upstream:', '  requestDeadlineMs: 1.5')),
    '2:3',
    'upstream.requestDeadlineMs',
    'expected an integer',
  )
  assertIssue(parseError(yaml('shutdownGraceMs: -5')), '1:1', 'shutdownGraceMs', 'must be > 0')
  assertIssue(parseError(yaml('cache:', '  maxTokens: 0')), '2:3', 'cache.maxTokens', 'must be > 0')
  // What one timer holds (setTimeout fires a longer delay after 1 ms).
  assertIssue(
    parseError(yaml('upstream:', '  timeoutMs: 3000000000')),
    '2:3',
    'upstream.timeoutMs',
    'must be ≤ 2147483647',
  )
  assertIssue(
    parseError(yaml('shutdownGraceMs: 2147483648')),
    '1:1',
    'shutdownGraceMs',
    'must be ≤ 2147483647',
  )
})

test('identity names follow /^[A-Za-z0-9][A-Za-z0-9_.-]*$/', () => {
  assertIssue(
    parseError(yaml('identities:', '  _bad:', '    managedIdentity: {}')),
    '2:3',
    'identities._bad',
    'invalid name',
  )
  assertIssue(
    parseError(yaml('identities:', '  "a b":', '    managedIdentity: {}')),
    '2:3',
    'identities["a b"]',
    'invalid name',
  )
  assert.ok(
    parse(yaml('identities:', '  app.v2_x-1:', '    managedIdentity: {}')).identities.has('app.v2_x-1'),
  )
})

test('URLs must be absolute http(s); authority hosts carry no path', () => {
  assertIssue(
    parseError(yaml('upstream:', '  imdsEndpoint: 169.254.169.254')),
    '2:3',
    'upstream.imdsEndpoint',
    'expected an absolute http(s) URL',
  )
  assertIssue(
    parseError(yaml('upstream:', '  authorityHost: ftp://login.test')),
    '2:3',
    'upstream.authorityHost',
    'expected an absolute http(s) URL',
  )
  const withTenant = parseError(
    yaml(
      'identities:',
      '  app:',
      `    tenantId: ${tenant}`,
      `    clientId: ${client}`,
      `    instance: https://login.microsoftonline.com/${tenant}`,
      '    clientCredentials: [{ sourceType: ClientSecret, clientSecret: x }]',
    ),
  )
  assertIssue(withTenant, '5:5', 'identities.app.instance', 'no path')
})

test('every problem is reported at once, sorted by position', () => {
  const error = parseError(yaml('listen:', '  port: x', 'cache:', '  maxTokens: y', 'bogus: 1'))
  assert.deepEqual(
    error.issues.map((issue) => `${issue.line}:${issue.column} ${issue.path}`),
    ['2:3 listen.port', '4:3 cache.maxTokens', '5:1 bogus'],
  )
})

test('clientCapabilities must be capability names; compat takes only agentIdSidecar', () => {
  const error = parseError(
    yaml('identities:', '  mi:', '    managedIdentity: {}', '    clientCapabilities: ["cp 1"]'),
  )
  assertIssue(error, '4:26', 'identities.mi.clientCapabilities[0]', 'expected a capability name such as cp1')
  const compat = parseError(yaml('compat:', '  agentIdSidecars: true'))
  assertIssue(compat, '2:3', 'compat.agentIdSidecars', 'unknown key (allowed here: agentIdSidecar)')
})
