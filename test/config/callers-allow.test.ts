import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describeConfig } from '../../sidecar/src/config/describe.ts'
import { ConfigError, parseConfig, type ParseConfigOptions } from '../../sidecar/src/config/load.ts'
import { parsePasswd } from '../../sidecar/src/config/passwd.ts'
import { assertIssue, yaml } from './helpers.ts'

const passwdFile = join(mkdtempSync(join(tmpdir(), 'sidecar-passwd-')), 'passwd')
writeFileSync(
  passwdFile,
  [
    'root:x:0:0:root:/root:/bin/bash',
    '# a comment',
    'www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin',
    'broken line',
    'app:x:1000:1000::/home/app:/bin/sh',
    'app:x:2000:2000:shadowed by the first line:/:/bin/sh',
    '',
  ].join('\n'),
)

const options = (extra: Partial<ParseConfigOptions> = {}): ParseConfigOptions => ({
  source: 'config.yaml',
  env: {},
  passwdFile,
  platform: 'linux',
  ...extra,
})

/** Identities mi and app; `callers:` starts on line 1, so entry N's first key is on line 3 + 2N. */
function config(...allowLines: string[]): string {
  return yaml(
    'callers:',
    '  allow:',
    ...allowLines,
    'identities:',
    '  mi:',
    '    managedIdentity: {}',
    '  app:',
    '    managedIdentity: { userAssignedClientId: 44444444-4444-4444-4444-444444444444 }',
  )
}

function rejected(text: string, extra: Partial<ParseConfigOptions> = {}): ConfigError {
  try {
    parseConfig(text, options(extra))
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error))
    return error
  }
  assert.fail('expected the config to be rejected')
}

test('uid and user entries resolve, in file order, users through the passwd file', () => {
  const parsed = parseConfig(
    config(
      '    - uid: 1001',
      '      identities: [app, mi]',
      '    - user: www-data',
      '      identities: [mi]',
    ),
    options(),
  )
  assert.deepEqual(parsed.callers.allow, [
    { uid: 1001, identities: ['app', 'mi'] },
    { uid: 33, user: 'www-data', identities: ['mi'] },
  ])
  assert.equal(
    parseConfig(yaml('identities:', '  mi:', '    managedIdentity: {}'), options()).callers.allow,
    undefined,
  )
})

test('check-config prints the policy', () => {
  const text = describeConfig(
    parseConfig(
      config(
        '    - uid: 1001',
        '      identities: [app, mi]',
        '    - user: www-data',
        '      identities: [mi]',
      ),
      options(),
    ),
  )
  assert.match(
    text,
    /^callers\.allow \(local uid → identities; any other caller gets 403; IMDS\/App Service routes serve the first\):$/m,
  )
  assert.match(text, /^ {2}uid 1001: app, mi$/m)
  assert.match(text, /^ {2}uid 33 \(www-data\): mi$/m)
  const open = describeConfig(parseConfig(yaml('identities:', '  mi:', '    managedIdentity: {}'), options()))
  assert.match(open, /^callers\.allow: not set \(every local caller may use every identity\)$/m)
})

test('an unknown identity is named with where it is', () => {
  const error = rejected(config('    - uid: 1001', '      identities: [mi, nope]'))
  assertIssue(
    error,
    '4:24',
    'callers.allow[0].identities[1]',
    'no identity is named "nope" (configured: mi, app)',
  )
})

test('an unknown user name fails, and says what to do about directory users', () => {
  const error = rejected(config('    - user: ghost', '      identities: [mi]'))
  assertIssue(error, '3:7', 'callers.allow[0].user', `no user "ghost" in ${passwdFile}`)
  assertIssue(error, '3:7', 'callers.allow[0].user', 'use uid: <number>')
})

test('an unreadable passwd file fails the user entries with the reason', () => {
  const error = rejected(config('    - user: app', '      identities: [mi]'), {
    passwdFile: '/nonexistent/passwd',
  })
  assertIssue(error, '3:7', 'callers.allow[0].user', 'cannot read /nonexistent/passwd (ENOENT)')
})

test('duplicate entries: the same uid twice, also when written once as user and once as uid', () => {
  const error = rejected(
    config(
      '    - user: www-data',
      '      identities: [mi]',
      '    - uid: 33',
      '      identities: [app]',
      '    - uid: 5',
      '      identities: [mi, mi]',
    ),
  )
  assertIssue(error, '5:7', 'callers.allow[1].uid', 'uid 33 already has an entry (callers.allow[0])')
  assertIssue(error, '8:24', 'callers.allow[2].identities[1]', '"mi" is listed twice in this entry')
})

test('an entry with both uid and user, or neither, fails', () => {
  const both = rejected(config('    - uid: 33', '      user: www-data', '      identities: [mi]'))
  assertIssue(both, '4:7', 'callers.allow[0].user', 'set either uid or user, not both')
  const neither = rejected(config('    - identities: [mi]'))
  assertIssue(neither, '3:7', 'callers.allow[0]', 'name the caller with uid: <number> or user: <name>')
})

test('shape errors: a negative uid, no identities, an empty list, an unknown key', () => {
  assertIssue(rejected(config('    - uid: -1', '      identities: [mi]')), '3:7', 'callers.allow[0].uid', '')
  assertIssue(
    rejected(config('    - uid: 1', '      identities: []')),
    '4:7',
    'callers.allow[0].identities',
    'list at least one identity',
  )
  assertIssue(rejected(yaml('callers:', '  allow: []')), '2:3', 'callers.allow', 'list at least one entry')
  assertIssue(
    rejected(config('    - uid: 1', '      identity: [mi]')),
    '4:7',
    'callers.allow[0].identity',
    'unknown key',
  )
})

test('callers.allow with listen.socket is accepted: the Unix socket peer uid is read with SO_PEERCRED', () => {
  const parsed = parseConfig(
    yaml(
      'listen:',
      '  socket: /run/credential-sidecar/sidecar.sock',
      ...config('    - uid: 1', '      identities: [mi]').trimEnd().split('\n'),
    ),
    options(),
  )
  assert.equal(parsed.listen.socket, '/run/credential-sidecar/sidecar.sock')
  assert.deepEqual(parsed.callers.allow, [{ uid: 1, identities: ['mi'] }])
})

test('callers.allow on a platform other than Linux is a clear error', () => {
  const error = rejected(config('    - uid: 1', '      identities: [mi]'), { platform: 'darwin' })
  assertIssue(error, '2:3', 'callers.allow', 'callers.allow needs Linux')
})

test('a uid may come from an environment variable', () => {
  const parsed = parseConfig(
    config('    - uid: ${APP_UID}', '      identities: [mi]'),
    options({ env: { APP_UID: '1234' } }),
  )
  assert.deepEqual(parsed.callers.allow, [{ uid: 1234, identities: ['mi'] }])
})

test('parsePasswd: first line per name wins; comments and malformed lines are skipped', () => {
  const users = parsePasswd(
    'a:x:1:1::/:/bin/sh\n#b:x:2:2::/:/bin/sh\nc:x:notanumber:3::/:/bin/sh\nd:x:4\na:x:9:9::/:/bin/sh\n',
  )
  assert.deepEqual([...users], [['a', 1]])
})
