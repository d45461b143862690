import { test } from 'node:test'
import assert from 'node:assert/strict'
import { assertIssue, client, parse, parseError, tenant, yaml } from './helpers.ts'

const appWithSecret = (secretLine: string) =>
  yaml(
    'identities:',
    '  app:',
    `    tenantId: ${tenant}`,
    `    clientId: ${client}`,
    '    clientCredentials:',
    '      - sourceType: ClientSecret',
    `        clientSecret: ${secretLine}`,
  )

function secretOf(text: string, env: NodeJS.ProcessEnv): string | undefined {
  const app = parse(text, env).identities.get('app')
  const credential = app?.kind === 'confidentialClient' ? app.clientCredentials[0] : undefined
  return credential?.sourceType === 'ClientSecret' ? credential.clientSecret : undefined
}

test('a whole scalar ${NAME} is replaced by the variable', () => {
  assert.equal(secretOf(appWithSecret('${APP_SECRET}'), { APP_SECRET: 'from-env' }), 'from-env')
  const withPassword = parse(
    yaml(
      'identities:',
      '  app:',
      `    tenantId: ${tenant}`,
      `    clientId: ${client}`,
      '    clientCredentials:',
      '      - sourceType: Path',
      '        certificateDiskPath: /certs/app.p12',
      '        certificatePassword: "${CERT_PASSWORD}"',
    ),
    { CERT_PASSWORD: '' },
  ).identities.get('app')
  assert.ok(withPassword?.kind === 'confidentialClient')
  assert.deepEqual(withPassword.clientCredentials[0], {
    sourceType: 'Path',
    certificateDiskPath: '/certs/app.p12',
    certificatePassword: '',
    useBoundCredential: false,
  })
})

test('partial and repeated substitution inside a string', () => {
  assert.equal(secretOf(appWithSecret('prefix-${A}-${B}-${A}'), { A: '1', B: '2' }), 'prefix-1-2-1')
  const config = parse(yaml('listen:', '  socket: /run/${USER_NAME}/sidecar.sock'), { USER_NAME: 'svc' })
  assert.equal(config.listen.socket, '/run/svc/sidecar.sock')
})

test('substitution applies in lists and nested mappings', () => {
  const config = parse(
    yaml(
      'downstreamApis:',
      '  graph:',
      '    baseUrl: https://${GRAPH_HOST}',
      '    scopes: ["${SCOPE}", other]',
    ),
    { GRAPH_HOST: 'graph.example.test', SCOPE: 'https://graph.microsoft.com/.default' },
  )
  assert.deepEqual(config.downstreamApis.get('graph')?.scopes, [
    'https://graph.microsoft.com/.default',
    'other',
  ])
  assert.equal(config.downstreamApis.get('graph')?.baseUrl, 'https://graph.example.test')
})

test('$${ is a literal ${ and is not substituted', () => {
  assert.equal(secretOf(appWithSecret('"$${NOT_A_VAR}"'), {}), '${NOT_A_VAR}')
  assert.equal(secretOf(appWithSecret('"$${X} and ${B}"'), { B: 'x', X: 'unused' }), '${X} and x')
  assert.equal(secretOf(appWithSecret('cost$5'), {}), 'cost$5')
})

test('an unset variable is an error naming it, at the key that uses it', () => {
  const error = parseError(appWithSecret('${APP_SECRET}'))
  assertIssue(
    error,
    '7:9',
    'identities.app.clientCredentials[0].clientSecret',
    'environment variable APP_SECRET is not set',
  )
  const several = parseError(yaml('listen:', '  socket: ${A}/${B}'))
  assertIssue(several, '2:3', 'listen.socket', 'environment variables A, B are not set')
})

test('an unset variable inside a list is reported at the item', () => {
  const error = parseError(
    yaml(
      'downstreamApis:',
      '  graph:',
      '    baseUrl: https://x.test',
      '    scopes:',
      '      - ok',
      '      - ${SCOPE}',
    ),
  )
  assertIssue(error, '6:9', 'downstreamApis.graph.scopes[1]', 'SCOPE is not set')
})

test('malformed references are errors that explain the escape', () => {
  assertIssue(parseError(yaml('listen:', '  socket: ${OPEN')), '2:3', 'listen.socket', 'unterminated ${')
  assertIssue(
    parseError(yaml('listen:', '  socket: ${not-a-name}')),
    '2:3',
    'listen.socket',
    'write $${ for a literal',
  )
})

test('numbers and booleans may come from whole-scalar variables', () => {
  const config = parse(
    yaml(
      'listen:',
      '  host: ${HOST}',
      '  port: ${PORT}',
      '  allowNonLoopback: ${OPEN}',
      'upstream:',
      '  timeoutMs: ${TIMEOUT}',
      'identities:',
      '  mi:',
      '    managedIdentity: {}',
      '    warm: ${WARM}',
    ),
    { HOST: '0.0.0.0', PORT: '7781', OPEN: 'true', TIMEOUT: '2500', WARM: 'FALSE' },
  )
  assert.equal(config.listen.port, 7781)
  assert.equal(config.listen.allowNonLoopback, true)
  assert.equal(config.upstream.timeoutMs, 2500)
  assert.equal(config.identities.get('mi')?.warm, false)
})

test('a variable that does not hold the number asked for is an error naming the variable, not its value', () => {
  const error = parseError(yaml('listen:', '  port: ${PORT}'), { PORT: 'seventy' })
  assertIssue(error, '2:3', 'listen.port', 'expected a number, got a string (from ${PORT})')
  assert.ok(!error.message.includes('seventy'))
  assertIssue(
    parseError(yaml('listen:', '  port: ${PORT}'), { PORT: '1.5' }),
    '2:3',
    'listen.port',
    'expected an integer',
  )
})

test('only a whole-scalar variable is converted: quoted or partial numbers stay strings', () => {
  assertIssue(
    parseError(yaml('listen:', '  port: "7780"')),
    '2:3',
    'listen.port',
    'expected a number, got a string',
  )
  assertIssue(
    parseError(yaml('listen:', '  port: 7${P}'), { P: '780' }),
    '2:3',
    'listen.port',
    'expected a number',
  )
})
