import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { promisify } from 'node:util'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describeConfig } from '../../sidecar/src/config/describe.ts'
import { configFromEnvironment } from '../../sidecar/src/config/environment.ts'
import { isConfigError, type ConfigError } from '../../sidecar/src/config/load.ts'
import { registerApp, registerWorkloadIssuer } from '../../sidecar/src/emulator/entra.ts'
import { startEmulator } from '../support/emulator.ts'
import { startProcess } from '../process/process.ts'
import { client, parse, tenant } from './helpers.ts'

const tokenFile = '/var/run/secrets/azure/tokens/azure-identity-token'
const workload = { AZURE_FEDERATED_TOKEN_FILE: tokenFile, AZURE_CLIENT_ID: client, AZURE_TENANT_ID: tenant }

function environmentError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    configFromEnvironment(env)
  } catch (error) {
    if (isConfigError(error)) return error
    throw error
  }
  assert.fail('expected a ConfigError')
}

test('no variables: the system-assigned managed identity "mi", every default', () => {
  const config = configFromEnvironment({})
  assert.equal(config.source, undefined)
  assert.deepEqual([...config.identities.keys()], ['mi'])
  const mi = config.identities.get('mi')
  assert.ok(mi?.kind === 'managedIdentity')
  assert.deepEqual(mi.selector, { kind: 'system' })
  assert.equal(mi.protocolScheme, 'Bearer')
  assert.deepEqual(config.listen, { host: '127.0.0.1', port: 7780, allowNonLoopback: false, backlog: 4096 })
  assert.deepEqual({ ...config, source: 'config.yaml' }, parse(''))
})

test('AZURE_CLIENT_ID alone: the user-assigned managed identity "mi" with that client id', () => {
  const config = configFromEnvironment({ AZURE_CLIENT_ID: client })
  const mi = config.identities.get('mi')
  assert.ok(mi?.kind === 'managedIdentity')
  assert.deepEqual(mi.selector, { kind: 'clientId', value: client })
  assert.equal(config.defaultIdentity, 'mi')
})

test('workload identity: confidential client "app" reading the token file; AKS authority host with a trailing /', () => {
  const config = configFromEnvironment({
    ...workload,
    AZURE_AUTHORITY_HOST: 'https://login.microsoftonline.us/',
  })
  assert.deepEqual([...config.identities.keys()], ['app'])
  assert.equal(config.defaultIdentity, 'app')
  const app = config.identities.get('app')
  assert.ok(app?.kind === 'confidentialClient')
  assert.equal(app.tenantId, tenant)
  assert.equal(app.clientId, client)
  assert.equal(app.authorityHost, 'https://login.microsoftonline.us')
  assert.equal(app.protocolScheme, 'Bearer')
  assert.deepEqual(app.clientCredentials, [
    { sourceType: 'SignedAssertionFilePath', signedAssertionFileDiskPath: tokenFile },
  ])
  // Without AZURE_AUTHORITY_HOST: the public cloud.
  const plain = configFromEnvironment(workload).identities.get('app')
  assert.ok(plain?.kind === 'confidentialClient')
  assert.equal(plain.authorityHost, 'https://login.microsoftonline.com')
})

test('workload identity with a variable missing names it', () => {
  assert.match(
    environmentError({ AZURE_FEDERATED_TOKEN_FILE: tokenFile, AZURE_CLIENT_ID: client }).message,
    /^environment: identities\.app: AZURE_FEDERATED_TOKEN_FILE is set \(workload identity\) but AZURE_TENANT_ID is not/,
  )
  assert.match(
    environmentError({ AZURE_FEDERATED_TOKEN_FILE: tokenFile }).message,
    /AZURE_CLIENT_ID and AZURE_TENANT_ID are not/,
  )
  assert.match(
    environmentError({ ...workload, AZURE_TENANT_ID: 'common' }).message,
    /^environment: identities\.app\.tenantId: "common" is not a tenant.*\(from AZURE_TENANT_ID\)$/,
  )
  assert.match(
    environmentError({ ...workload, AZURE_AUTHORITY_HOST: 'https://login.example/tenant' }).message,
    /identities\.app\.authorityHost: expected only scheme, host and port.*\(from AZURE_AUTHORITY_HOST\)/,
  )
})

test('CREDENTIAL_SIDECAR_LISTEN, _OPS_LISTEN, _SECRET_FILE, _PROTOCOL_SCHEME', () => {
  const config = configFromEnvironment({
    CREDENTIAL_SIDECAR_LISTEN: '[::1]:0',
    CREDENTIAL_SIDECAR_OPS_LISTEN: '0.0.0.0:7781',
    CREDENTIAL_SIDECAR_SECRET_FILE: '/run/secrets/identity-header',
    CREDENTIAL_SIDECAR_PROTOCOL_SCHEME: 'MTLS_POP',
  })
  assert.deepEqual(config.listen, {
    host: '::1',
    port: 0,
    allowNonLoopback: false,
    backlog: 4096,
    ops: { host: '0.0.0.0', port: 7781 },
  })
  assert.equal(config.callers.secretFile, '/run/secrets/identity-header')
  assert.equal(config.identities.get('mi')?.protocolScheme, 'MTLS_POP')
})

test('bad CREDENTIAL_SIDECAR_* values fail naming the variable', () => {
  assert.match(
    environmentError({ CREDENTIAL_SIDECAR_LISTEN: '7780' }).message,
    /^environment: listen: CREDENTIAL_SIDECAR_LISTEN: expected host:port/,
  )
  assert.match(
    environmentError({ CREDENTIAL_SIDECAR_OPS_LISTEN: 'x:99999' }).message,
    /CREDENTIAL_SIDECAR_OPS_LISTEN/,
  )
  assert.match(
    environmentError({ CREDENTIAL_SIDECAR_LISTEN: '0.0.0.0:7780' }).message,
    /listen\.host: 0\.0\.0\.0 is not a loopback address.*\(from CREDENTIAL_SIDECAR_LISTEN\)/,
  )
  assert.match(
    environmentError({ CREDENTIAL_SIDECAR_PROTOCOL_SCHEME: 'PoP' }).message,
    /identities\.mi\.protocolScheme: .*\(from CREDENTIAL_SIDECAR_PROTOCOL_SCHEME\)/,
  )
  assert.match(
    environmentError({ ...workload, CREDENTIAL_SIDECAR_PROTOCOL_SCHEME: 'MTLS_POP' }).message,
    /identities\.app\.protocolScheme: MTLS_POP needs a credential that can bind.*\(from CREDENTIAL_SIDECAR_PROTOCOL_SCHEME\)/,
  )
  assert.match(
    environmentError({ CREDENTIAL_SIDECAR_LOG_LEVEL: 'loud' }).message,
    /log\.level: environment variable CREDENTIAL_SIDECAR_LOG_LEVEL \(used as the default\)/,
  )
})

test('with a config file the CREDENTIAL_SIDECAR_* and AZURE_* identity variables are ignored; the log level still applies', () => {
  const config = parse('', {
    ...workload,
    CREDENTIAL_SIDECAR_LISTEN: '127.0.0.1:9999',
    CREDENTIAL_SIDECAR_PROTOCOL_SCHEME: 'MTLS_POP',
    CREDENTIAL_SIDECAR_LOG_LEVEL: 'debug',
  })
  assert.equal(config.listen.port, 7780)
  assert.deepEqual([...config.identities.keys()], ['mi'])
  assert.equal(config.identities.get('mi')?.protocolScheme, 'Bearer')
  assert.equal(config.log.level, 'debug')
})

test('check-config output says the config came from the environment', () => {
  const text = describeConfig(
    configFromEnvironment({ AZURE_CLIENT_ID: client, CREDENTIAL_SIDECAR_OPS_LISTEN: '0.0.0.0:7781' }),
  )
  assert.match(text, /^config: \(none: from the environment/m)
  assert.match(text, /ops \(health, readiness, metrics only\) http:\/\/0\.0\.0\.0:7781/)
  assert.match(text, new RegExp(`user-assigned, clientId ${client}`))
})

test('a container with only workload-identity variables serves tokens; Entra trusted through NODE_EXTRA_CA_CERTS', async (t) => {
  const emulator = await startEmulator()
  t.after(() => emulator.close())
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-env-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const subject = 'system:serviceaccount:default:workload'
  const issuer = await registerWorkloadIssuer(emulator.state, 'https://oidc.aks.example/cluster-1/')
  const clientId = registerApp(emulator.state, {
    federatedIssuers: [{ issuer: issuer.issuer, subject }],
  }).clientId
  await writeFile(join(dir, 'token'), await issuer.sign({ subject }))
  await writeFile(join(dir, 'ca.pem'), emulator.caPem)
  // No config file and no caFile: the emulated Entra's CA comes from NODE_EXTRA_CA_CERTS.
  const proc = startProcess(t, [], {
    AZURE_FEDERATED_TOKEN_FILE: join(dir, 'token'),
    AZURE_CLIENT_ID: clientId,
    AZURE_TENANT_ID: emulator.state.tenantId,
    AZURE_AUTHORITY_HOST: `${emulator.entraUrl}/`,
    NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem'),
    CREDENTIAL_SIDECAR_LISTEN: '127.0.0.1:0',
    CREDENTIAL_SIDECAR_OPS_LISTEN: '127.0.0.1:0',
    CREDENTIAL_SIDECAR_CONFIG: '',
  })
  const listening = await proc.waitFor('listening')
  assert.deepEqual(listening['identities'], ['app'])
  assert.match(listening['ops'], /^http:\/\/127\.0\.0\.1:\d+$/)
  const res = await fetch(`${listening['url']}/token?resource=https://graph.microsoft.com`, {
    headers: { Metadata: 'true' },
  })
  const body = (await res.json()) as Record<string, unknown>
  assert.equal(res.status, 200, JSON.stringify(body))
  assert.equal(body['token_type'], 'Bearer')
  assert.equal(body['identity'], 'app')
  assert.equal((await fetch(`${listening['ops']}/readyz`)).status, 200)
  proc.child.kill('SIGTERM')
  assert.equal((await proc.exit).code, 0)
})

test('upstream trust with a caFile still includes NODE_EXTRA_CA_CERTS (and the public roots)', async (t) => {
  const emulator = await startEmulator()
  t.after(() => emulator.close())
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-trust-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'extra.pem'), emulator.caPem)
  // NODE_EXTRA_CA_CERTS is read when Node starts, hence a child process.
  const trustedCas = new URL('../../sidecar/src/upstream/tls.ts', import.meta.url).href
  const script = `import { rootCertificates } from 'node:tls'
const { trustedCas } = await import(${JSON.stringify(trustedCas)})
const list = trustedCas(['-----BEGIN CERTIFICATE-----\\nfrom caFile\\n-----END CERTIFICATE-----\\n'])
const norm = (pem) => pem.replace(/\\s+/g, '')
const extra = norm(process.env.EXPECTED)
console.log(JSON.stringify({ extra: list.some((c) => norm(c) === extra), roots: rootCertificates.every((r) => list.includes(r)), caFile: list.at(-1).includes('from caFile') }))`
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
    env: {
      PATH: process.env['PATH'] ?? '',
      NODE_EXTRA_CA_CERTS: join(dir, 'extra.pem'),
      EXPECTED: emulator.caPem,
    },
  })
  assert.deepEqual(JSON.parse(stdout), { extra: true, roots: true, caFile: true })
})
