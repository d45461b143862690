import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { loadConfigFile } from '../../sidecar/src/config/load.ts'
import { describeConfig } from '../../sidecar/src/config/describe.ts'

const examples = join(import.meta.dirname, '../../deploy/examples')

/** The variables the examples reference, as a deployment would set them. */
const env = {
  APP_CERT_PASSWORD: 'example-password',
  APP_CERT_BASE64: 'TUlJQ2V4YW1wbGU=',
  SIDECAR_PORT: '7781',
  AZURE_TENANT_ID: '00000000-0000-0000-0000-000000000000',
  AZURE_CLIENT_ID: '33333333-3333-3333-3333-333333333333',
  AZURE_FEDERATED_TOKEN_FILE: '/var/run/secrets/azure/tokens/azure-identity-token',
}

test('every file in deploy/examples loads and describes without secrets', async () => {
  const files = (await readdir(examples)).filter((name) => name.endsWith('.yaml'))
  assert.ok(files.length >= 5, `expected the five documented examples, found ${files.join(', ')}`)
  for (const file of files) {
    const config = await loadConfigFile(join(examples, file), env)
    assert.ok(config.identities.size > 0, file)
    const description = describeConfig(config)
    for (const secret of [env.APP_CERT_PASSWORD, env.APP_CERT_BASE64]) {
      assert.ok(!description.includes(secret), `${file}: describeConfig printed a secret`)
    }
  }
})

test('the examples resolve to what their comments promise', async () => {
  const load = (file: string) => loadConfigFile(join(examples, file), env)
  const bearer = await load('managed-identity-bearer.yaml')
  assert.deepEqual(bearer.identities.get('mi')?.protocolScheme, 'Bearer')

  const pop = await load('managed-identity-mtls-pop.yaml')
  assert.equal(pop.identities.get('mi')?.protocolScheme, 'MTLS_POP')

  const fic = (await load('confidential-client-fic.yaml')).identities.get('app')
  assert.ok(fic?.kind === 'confidentialClient')
  assert.deepEqual(
    fic.clientCredentials.map((credential) => credential.sourceType),
    ['SignedAssertionFromManagedIdentity', 'Path'],
  )
  assert.equal(fic.authorityHost, 'https://login.microsoftonline.com')

  const workload = await load('kubernetes-workload-identity.yaml')
  assert.equal(workload.listen.port, 7781)
  assert.equal(workload.defaultIdentity, 'workload')

  const proxy = await load('downstream-apis.yaml')
  assert.deepEqual(
    [...proxy.downstreamApis.values()].map((api) => `${api.name}:${api.identity}`),
    ['graph:app', 'arm:mi'],
  )

  const allow = await load('callers-allow.yaml')
  assert.deepEqual(allow.callers.allow, [
    { uid: 1000, identities: ['app'] },
    { uid: 33, user: 'www-data', identities: ['mi'] },
  ])
})

test('the full example in docs/configuration.md loads, and "no config file" equals defaultConfig', async () => {
  const { readFile } = await import('node:fs/promises')
  const { parseConfig, defaultConfig } = await import('../../sidecar/src/config/load.ts')
  const reference = await readFile(join(import.meta.dirname, '../../docs/configuration.md'), 'utf8')
  const blockAfter = (heading: string) => {
    const match = new RegExp(`## ${heading}[\\s\\S]*?\`\`\`yaml\\n([\\s\\S]*?)\`\`\``).exec(reference)
    assert.ok(match?.[1], `no yaml block after "## ${heading}"`)
    return match[1]
  }
  const full = parseConfig(blockAfter('Full example'), {
    source: 'configuration.md',
    env: { CERT_PASSWORD: 'p', APP_SECRET: 's' },
  })
  assert.deepEqual([...full.identities.keys()], ['mi', 'app'])
  const none = parseConfig(blockAfter('No config file'), { source: 'configuration.md', env: {} })
  assert.deepEqual({ ...none, source: undefined }, defaultConfig({}))
})
