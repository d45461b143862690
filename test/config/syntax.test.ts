import { test } from 'node:test'
import assert from 'node:assert/strict'
import { assertIssue, client, parseError, tenant, yaml } from './helpers.ts'

test('a YAML syntax error is reported with its line and column', () => {
  const error = parseError(yaml('listen:', '  port: 7780', 'identities: [mi', 'cache: {}'))
  assert.match(error.message, /^config\.yaml:\d+:\d+ YAML: /)
  assert.ok(error.issues.every((issue) => issue.line >= 3))
  const misindented = parseError(yaml('listen:', '  port: 1', '   host: x'))
  assert.equal(misindented.issues[0]?.line, 2)
})

test('several YAML documents in one file are an error', () => {
  const error = parseError(yaml('listen: {}', '---', 'cache: {}'))
  assert.equal(
    error.message,
    'config.yaml:2:1 YAML: a config file holds one document; remove the second "---"',
  )
})

test('an unknown top-level key is an error at that key, with a suggestion', () => {
  const error = parseError(yaml('listen:', '  port: 1', 'identites:', '  mi:', '    managedIdentity: {}'))
  assertIssue(error, '3:1', 'identites', 'unknown key (allowed here: listen, callers, upstream')
  assertIssue(error, '3:1', 'identites', 'did you mean identities?')
})

test('unknown keys are errors in every mapping', () => {
  assertIssue(parseError(yaml('listen:', '  hots: 127.0.0.1')), '2:3', 'listen.hots', 'did you mean host?')
  assertIssue(parseError(yaml('callers:', '  secret: x')), '2:3', 'callers.secret', 'unknown key')
  assertIssue(parseError(yaml('log:', '  format: json')), '2:3', 'log.format', 'allowed here: level')
  assertIssue(
    parseError(yaml('identities:', '  mi:', '    managedIdentity:', '      clientId: c')),
    '4:7',
    'identities.mi.managedIdentity.clientId',
    'allowed here: userAssignedClientId, userAssignedObjectId, userAssignedResourceId',
  )
  assertIssue(
    parseError(yaml('identities:', '  mi:', '    managedIdentity: {}', '    sendX5C: true')),
    '4:5',
    'identities.mi.sendX5C',
    'unknown key',
  )
  assertIssue(
    parseError(
      yaml(
        'identities:',
        '  app:',
        `    tenantId: ${tenant}`,
        `    clientId: ${client}`,
        '    useBoundCredential: true',
        '    clientCredentials: [{ sourceType: ClientSecret, clientSecret: x }]',
      ),
    ),
    '5:5',
    'identities.app.useBoundCredential',
    'unknown key',
  )
  assertIssue(
    parseError(
      yaml('downstreamApis:', '  g:', '    baseUrl: https://g.test', '    scopes: [s]', '    scope: s'),
    ),
    '5:5',
    'downstreamApis.g.scope',
    'did you mean scopes?',
  )
})

test('a credential with an unknown key, a missing key and a bad sourceType', () => {
  const error = parseError(
    yaml(
      'identities:',
      '  app:',
      `    tenantId: ${tenant}`,
      `    clientId: ${client}`,
      '    clientCredentials:',
      '      - sourceType: Pathh',
      '      - sourceType: Path',
      '        certificatePath: /c.pem',
      '      - certificateDiskPath: /c.pem',
    ),
  )
  assertIssue(
    error,
    '6:9',
    'identities.app.clientCredentials[0].sourceType',
    'expected one of Path, Base64Encoded, SignedAssertionFromManagedIdentity, SignedAssertionFilePath, ClientSecret',
  )
  // A missing key points at its parent mapping: here the list item.
  assertIssue(
    error,
    '7:9',
    'identities.app.clientCredentials[1].certificateDiskPath',
    'required key is missing',
  )
  assertIssue(error, '8:9', 'identities.app.clientCredentials[1].certificatePath', 'unknown key')
  assertIssue(
    error,
    '9:9',
    'identities.app.clientCredentials[2].sourceType',
    'required key is missing (expected one of Path,',
  )
  assert.ok(!error.message.includes('/c.pem'), 'values are not echoed')
})

test('a missing required key is reported at its parent mapping', () => {
  const error = parseError(
    yaml(
      'identities:',
      '  app:',
      `    tenantId: ${tenant}`,
      '    clientCredentials: [{ sourceType: ClientSecret, clientSecret: x }]',
    ),
  )
  assertIssue(error, '2:3', 'identities.app.clientId', 'required key is missing (expected a string)')
})

test('wrong types say what was expected in YAML terms', () => {
  assertIssue(parseError(yaml('listen: 7780')), '1:1', 'listen', 'expected a mapping, got a number')
  assertIssue(
    parseError(yaml('callers:', '  exposePrivateKey: yes')),
    '2:3',
    'callers.exposePrivateKey',
    'expected true or false, got a string',
  )
  assertIssue(parseError(yaml('identities:', '  mi: []')), '2:3', 'identities.mi', 'expected a mapping')
  assertIssue(
    parseError(yaml('log:', '  level: verbose')),
    '2:3',
    'log.level',
    'expected one of fatal, error, warn, info, debug, trace, silent',
  )
  assert.match(parseError(yaml('- a', '- b')).message, /^config\.yaml:1:1 expected a mapping, got a list$/)
})

test('a duplicate key is an error at the second occurrence, naming the first', () => {
  const error = parseError(yaml('listen:', '  port: 1', '  host: 127.0.0.1', '  port: 2'))
  assertIssue(error, '4:3', 'listen.port', 'duplicate key (first set on line 2)')
  const identities = parseError(
    yaml('identities:', '  mi:', '    managedIdentity: {}', '  mi:', '    managedIdentity: {}'),
  )
  assertIssue(identities, '4:3', 'identities.mi', 'duplicate key')
})

test('an unreadable file is a ConfigError naming the file', async () => {
  const { loadConfigFile, ConfigError } = await import('../../sidecar/src/config/load.ts')
  await assert.rejects(loadConfigFile('/nonexistent/config.yaml', {}), (error: unknown) => {
    assert.ok(error instanceof ConfigError)
    assert.equal(error.message, '/nonexistent/config.yaml: cannot read the config file (ENOENT)')
    return true
  })
})

test('YAML tags the loader does not know are errors', () => {
  assertIssue(parseError(yaml('listen:', '  host: !custom x')), '2:9', '', 'YAML: Unresolved tag: !custom')
})

test('YAML aliases resolve; recursive ones are errors', async () => {
  const { parse } = await import('./helpers.ts')
  const shared = parse(
    yaml('downstreamApis:', '  a: &api', '    baseUrl: https://a.test', '    scopes: [s]', '  b: *api'),
  )
  assert.deepEqual(shared.downstreamApis.get('b'), {
    name: 'b',
    baseUrl: 'https://a.test',
    identity: 'mi',
    scopes: ['s'],
  })
  assertIssue(parseError(yaml('listen: &a', '  nested: *a')), '2:3', 'listen.nested.nested', 'recursive')
})
